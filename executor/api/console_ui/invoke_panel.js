// Invoke: a form generated from the input schema (or raw JSON), sync or Async; the answer, its
// status and the record's logs. The input is checked here with the server's own messages
// (schema_check.js) before it is sent; the server's 400 is shown the same way.
import { ApiError, call, fnPath, get } from "./api.js";
import { errorNotice, h, json, ms, notice, replace } from "./dom.js";
import { understands, validate } from "./schema_check.js";
import { formFits, renderForm } from "./schema_form.js";

const RECORD_WAIT_MS = 60_000;

export function showInvoke(panel, { ct, ft, fn }) {
  const schema = fn.schema?.input ?? null;
  const fits = schema !== null && formFits(schema);
  const formArea = h("div", { id: "invoke-fields" });
  const raw = h("textarea", { id: "invoke-json", rows: "8", spellcheck: "false", "aria-label": "Payload as JSON" }, "{}");
  const rawArea = h("div", { class: "raw", hidden: fits }, h("label", { for: "invoke-json" }, "Payload (JSON)"), raw, h("div", { id: "raw-errors" }));
  let form = fits ? renderForm(schema, formArea, { idPrefix: "in" }) : null;
  const asJson = h("input", { type: "checkbox", id: "invoke-raw", checked: !fits, disabled: !fits });
  const kind = h(
    "fieldset",
    { class: "kind" },
    h("legend", {}, "Call"),
    h("label", { class: "inline" }, h("input", { type: "radio", name: "invocation_type", value: "RequestResponse", checked: true }), " wait for the result"),
    h("label", { class: "inline" }, h("input", { type: "radio", name: "invocation_type", value: "Async" }), " Async (queued)"),
  );
  const outcome = h("div", { id: "invoke-outcome" });
  const send = h("button", { type: "submit", class: "primary", id: "invoke-send" }, "Invoke");
  const whole = h(
    "form",
    { id: "invoke-form", novalidate: true },
    h("p", {}, h("label", { class: "inline" }, asJson, " Edit as JSON"), fits ? null : h("span", { class: "muted" }, schema ? " (this schema has no form; the server checks what the page cannot)" : " (no input schema: any JSON)")),
    fits ? h("div", { hidden: asJson.checked }, formArea) : null,
    rawArea,
    kind,
    h("p", {}, send),
  );
  asJson.addEventListener("change", () => {
    if (asJson.checked && form) {
      const { value } = form.read();
      raw.value = json(value ?? {});
    } else if (form && !backToForm()) {
      asJson.checked = true; // the JSON holds what the form cannot show: it stays JSON
      return;
    }
    formArea.parentElement.hidden = asJson.checked;
    rawArea.hidden = !asJson.checked;
  });
  let abort = new AbortController();
  whole.addEventListener("submit", async (event) => {
    event.preventDefault();
    abort.abort();
    abort = new AbortController();
    const payload = readPayload();
    if (payload === undefined) return;
    const type = whole.elements.invocation_type.value;
    send.disabled = true;
    replace(outcome, notice("info", "Invoking…"));
    try {
      await invoke(payload, type, abort.signal);
    } finally {
      send.disabled = false;
    }
  });
  const unsure = schema !== null && !understands(schema)
    ? h("p", { class: "hint", id: "invoke-unsure" }, "This schema uses keywords the page does not check; the server's answer decides.")
    : null;
  replace(panel, h("h2", {}, "Invoke"), unsure, whole, outcome);
  return () => abort.abort();

  // The form again, filled from the JSON as edited; false (with the reason shown) when the
  // JSON is not an object of the schema's properties, which the form would lose.
  function backToForm() {
    const errors = rawArea.querySelector("#raw-errors");
    let value;
    try {
      value = JSON.parse(raw.value);
    } catch (error) {
      replace(errors, notice("error", `Not JSON, so it stays here: ${error.message}`));
      return false;
    }
    const known = new Set(Object.keys(schema.properties));
    const objectOfFields = value !== null && typeof value === "object" && !Array.isArray(value);
    const unknown = objectOfFields ? Object.keys(value).filter((key) => !known.has(key)) : [];
    if (!objectOfFields || unknown.length) {
      const why = objectOfFields ? `the form has no field for ${unknown.join(", ")}` : "the form holds an object";
      replace(errors, notice("error", `This JSON stays here: ${why}.`));
      return false;
    }
    replace(errors);
    formArea.replaceChildren();
    form = renderForm({ ...schema, default: value }, formArea, { idPrefix: "in" });
    return true;
  }

  // The payload, or undefined (with the problems shown) when it cannot be sent as it is.
  function readPayload() {
    form?.clear();
    replace(rawArea.querySelector("#raw-errors"));
    let value;
    if (asJson.checked) {
      try {
        value = JSON.parse(raw.value);
      } catch (error) {
        replace(rawArea.querySelector("#raw-errors"), notice("error", `The payload is not JSON: ${error.message}`));
        replace(outcome, notice("error", "Not sent: fix the JSON first."));
        return undefined;
      }
    } else {
      const read = form.read();
      if (read.problems.length) {
        showProblems(read.problems);
        return undefined;
      }
      value = read.value;
    }
    const problems = schema === null ? [] : validate(schema, value);
    if (problems.length) {
      showProblems(problems);
      return undefined;
    }
    return value;
  }

  function showProblems(details) {
    if (!asJson.checked && form) form.showErrors(details);
    else replace(rawArea.querySelector("#raw-errors"), errorNotice({ message: "The payload does not match the input schema", details }));
    replace(outcome, notice("error", "Not sent: fix the marked input first."));
  }

  async function invoke(payload, type, signal) {
    // A string payload is JSON text to the API (Quiva's convention), so a string is sent encoded.
    const body = { payload: typeof payload === "string" ? JSON.stringify(payload) : payload, invocation_type: type };
    let answer;
    try {
      answer = await call("POST", fnPath(ct, ft, "/invoke"), { body, signal });
    } catch (error) {
      if (!(error instanceof ApiError)) throw error;
      if (error.code === "invalid_input" && form && !asJson.checked) form.showErrors(error.details);
      const id = error.headers?.get("X-Invocation-Id");
      replace(outcome, statusLine(error.status, error.elapsedMs, id), errorNotice(error));
      if (id && error.status >= 500) await showRecord(id, signal);
      return;
    }
    const id = answer.headers.get("X-Invocation-Id");
    const result = h("pre", { class: "code", id: "invoke-result" }, json(answer.body));
    replace(outcome, statusLine(answer.status, answer.elapsedMs, id), h("h3", {}, type === "Async" ? "Accepted" : "Result"), result);
    await showRecord(id, signal, type === "Async");
  }

  async function showRecord(id, signal, waitForEnd = false) {
    const area = h("div", { id: "invoke-record" }, h("p", { class: "muted" }, "Waiting for the record…"));
    outcome.append(area);
    const until = Date.now() + RECORD_WAIT_MS;
    while (!signal.aborted && Date.now() < until) {
      try {
        const record = (await get(fnPath(ct, ft, `/invocations/${id}`), {}, signal)).body;
        replace(area, recordView(record, { output: waitForEnd })); // a sync result is shown above
        if (!waitForEnd || record.status === "succeeded" || record.status === "failed") return;
      } catch (error) {
        if (signal.aborted || error.status !== 404) {
          if (!signal.aborted) replace(area, errorNotice(error));
          return;
        }
      }
      await new Promise((resolve) => setTimeout(resolve, 400));
    }
  }
}

function statusLine(status, elapsedMs, id) {
  return h("p", { class: "status-line", role: "status" }, h("span", { class: `badge s${String(status)[0]}xx`, id: "invoke-status" }, `HTTP ${status}`), ` in ${ms(elapsedMs)}`, id ? [" · invocation ", h("code", {}, id)] : null);
}

export function recordView(record, { output = true } = {}) {
  return h(
    "div",
    { class: "record" },
    h("p", {}, h("span", { class: `badge ${record.status}` }, record.status), ` r${record.revision} · ${ms(record.duration_ms)} · worker ${record.worker || "–"}`),
    record.error_code ? h("p", { class: "bad" }, `${record.error_code}: ${record.error_message}`) : null,
    output && record.output !== undefined ? [h("h4", {}, "Output"), h("pre", { class: "code" }, json(record.output))] : null,
    h("h4", {}, "Logs"),
    h("pre", { class: "code logs" }, record.logs || "(nothing printed)"),
  );
}
