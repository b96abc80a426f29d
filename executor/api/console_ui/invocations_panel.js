// The newest monitor records, updated live as invocations finish; a status filter; the dead
// letters with a redrive button each.
import { call, fnPath, get } from "./api.js";
import { errorNotice, h, json, ms, notice, replace, when } from "./dom.js";
import { recordView } from "./invoke_panel.js";
import { liveRecords } from "./live.js";

const SHOWN = 100;
const POLL_MS = 5000;
const STATUSES = ["succeeded", "failed", "queued", "running"];

export function showInvocations(panel, { ct, ft }) {
  const filter = h("select", { id: "status-filter" }, h("option", { value: "" }, "any status"), STATUSES.map((s) => h("option", { value: s }, s)));
  const state = h("span", { id: "live-state", class: "badge" }, "connecting");
  const list = h("ol", { id: "invocation-list", class: "invocations" });
  const summary = h("p", { class: "muted", id: "invocation-count", "aria-live": "polite" });
  const letters = h("div", { id: "dead-letters" }, h("p", { class: "muted" }, "Loading…"));
  const records = new Map(); // invocation id -> record, newest first
  let polling = null;

  replace(
    panel,
    h("div", { class: "title-row" }, h("h2", {}, "Invocations"), h("label", { class: "filter" }, "Status ", filter), state),
    summary,
    list,
    h("h2", {}, "Dead letters"),
    h("p", { class: "muted" }, "Async invocations that failed every attempt. Redrive sends one again under the same id."),
    letters,
  );

  const draw = () => {
    const shown = [...records.values()].filter((r) => !filter.value || r.status === filter.value).slice(0, SHOWN);
    replace(list, shown.map(item));
    const which = filter.value ? ` ${filter.value}` : "";
    summary.textContent = shown.length
      ? `The newest ${shown.length}${which} (at most ${SHOWN}), newest first.`
      : filter.value ? `No ${filter.value} invocations.` : "No invocations yet.";
  };

  async function load() {
    const page = (await get(fnPath(ct, ft, "/invocations"), { limit: SHOWN, status: filter.value })).body;
    for (const record of page.results.reverse()) put(record, false);
    draw();
  }

  function put(record, fresh) {
    records.delete(record.invocation_id);
    const newest = new Map([[record.invocation_id, { ...record, fresh }], ...records]);
    records.clear();
    for (const [id, r] of newest) if (records.size < SHOWN * 4) records.set(id, r);
  }

  filter.addEventListener("change", () => {
    records.clear();
    load().catch((error) => replace(list, errorNotice(error)));
  });
  const stopLive = liveRecords(fnPath(ct, ft, "/invocations/live"), {
    onRecord: (record) => {
      put(record, true);
      draw();
    },
    onState: (now) => {
      state.textContent = now;
      state.className = `badge ${now}`;
      clearInterval(polling);
      polling = now === "polling" ? setInterval(() => load().catch(() => {}), POLL_MS) : null;
      if (now === "live") load().catch(() => {}); // whatever finished before the stream began
    },
  });
  load().catch((error) => replace(list, errorNotice(error)));
  loadDeadLetters(ct, ft, letters);
  return () => {
    stopLive();
    clearInterval(polling);
  };
}

function item(record) {
  return h(
    "li",
    { class: record.fresh ? "fresh" : "", dataset: { id: record.invocation_id, status: record.status } },
    h(
      "details",
      {},
      h(
        "summary",
        {},
        h("span", { class: "when" }, when(record.started)),
        h("span", { class: `badge ${record.status}` }, record.status),
        h("span", { class: "num" }, ms(record.duration_ms)),
        h("span", {}, `r${record.revision}`),
        h("span", { class: "muted" }, record.invocation_type === "Async" ? "Async" : "sync"),
        h("code", { class: "id" }, record.invocation_id),
      ),
      recordView(record),
      record.input !== undefined ? [h("h4", {}, "Input"), h("pre", { class: "code" }, json(record.input))] : null,
      h("p", { class: "muted" }, `worker ${record.worker || "–"} · attempts ${record.attempts} · trace ${record.trace_id || "–"}`),
    ),
  );
}

async function loadDeadLetters(ct, ft, area) {
  let page;
  try {
    page = (await get(fnPath(ct, ft, "/dead-letters"), { limit: 100 })).body;
  } catch (error) {
    replace(area, errorNotice(error));
    return;
  }
  if (!page.results.length) {
    replace(area, h("p", { class: "muted" }, "None."));
    return;
  }
  replace(
    area,
    h(
      "ul",
      { class: "letters" },
      page.results.map((letter) => {
        const outcome = h("span", { class: "outcome" });
        const button = h("button", { type: "button", "aria-label": `Redrive ${letter.invocation_id}` }, "Redrive");
        button.addEventListener("click", async () => {
          button.disabled = true;
          try {
            const answer = await call("POST", fnPath(ct, ft, `/invocations/${encodeURIComponent(letter.invocation_id)}/retry`));
            replace(outcome, notice("ok", `queued again as ${answer.body.invocation_id}; its record shows how it goes`));
            button.remove(); // this dead letter is spent; a new failure makes a new one
          } catch (error) {
            replace(outcome, errorNotice(error));
            button.disabled = false;
          }
        });
        return h(
          "li",
          { dataset: { id: letter.invocation_id } },
          h("code", {}, letter.invocation_id),
          ` ${letter.error_code}: ${letter.error_message} · ${letter.attempts} attempts · ${when(letter.failed_at)} `,
          letter.payload_omitted ? h("span", { class: "muted" }, "(payload not kept: cannot be redriven)") : button,
          outcome,
        );
      }),
    ),
  );
}
