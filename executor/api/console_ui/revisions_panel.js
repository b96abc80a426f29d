// Revisions with the aliases on each; moving an alias (promote, roll back) through
// PUT .../aliases/{alias}. The compatibility gate's 409 is shown with its details, and the move
// can then be forced, by a second, explicit button.
import { call, fnPath, get } from "./api.js";
import { errorNotice, h, notice, replace } from "./dom.js";

export function showRevisions(panel, { ct, ft, productionMoved }) {
  const outcome = h("div", { id: "alias-outcome" });
  const table = h("div", {}, h("p", { class: "muted" }, "Loading…"));
  const aliasInput = h("input", { id: "alias-name", value: "production", list: "alias-names", required: true, pattern: "[A-Za-z0-9_-]+", size: "14" });
  const revisionPick = h("select", { id: "alias-revision" });
  const names = h("datalist", { id: "alias-names" });
  const form = h(
    "form",
    { class: "inline-form", "aria-label": "Point an alias" },
    h("label", { for: "alias-name" }, "Point alias"), aliasInput, names,
    h("label", { for: "alias-revision" }, "at"), revisionPick,
    h("button", { type: "submit", class: "primary" }, "Point"),
  );
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    move(aliasInput.value.trim(), Number(revisionPick.value), false);
  });
  replace(panel, h("h2", {}, "Revisions"), form, outcome, table);

  async function move(alias, number, force) {
    replace(outcome, notice("info", `Pointing ${alias} at r${number}…`));
    try {
      const path = fnPath(ct, ft, `/aliases/${encodeURIComponent(alias)}`);
      await call("PUT", path, { query: force ? { force: "true" } : {}, body: { revision_number: number } });
      replace(outcome, notice("ok", `${alias} now points at r${number}${force ? " (forced)" : ""}.`));
      await load();
    } catch (error) {
      const forceButton =
        error.status === 409 && !force
          ? h("button", { type: "button", class: "danger", id: "force-alias", onclick: () => move(alias, number, true) }, `Point ${alias} at r${number} anyway (force)`)
          : null;
      replace(outcome, errorNotice(error, forceButton ? h("p", {}, "Callers of this alias may break. ", forceButton) : null));
    }
  }

  async function load() {
    const [revisions, aliases] = await Promise.all([
      get(fnPath(ct, ft, "/revisions"), { limit: 1000 }),
      get(fnPath(ct, ft, "/aliases")),
    ]);
    const rows = revisions.body.results.sort((a, b) => b.revision_number - a.revision_number);
    const production = aliases.body.results.find((a) => a.alias === "production")?.revision_number;
    productionMoved(production);
    replace(revisionPick, rows.map((r) => h("option", { value: String(r.revision_number) }, `r${r.revision_number}`)));
    replace(names, aliases.body.results.map((a) => h("option", { value: a.alias })));
    replace(
      table,
      h(
        "table",
        { class: "revisions" },
        h("thead", {}, h("tr", {}, ["Revision", "Created", "Handler", "Runtime", "Timeout", "Memory", "Aliases", ""].map((t) => h("th", { scope: "col" }, t)))),
        h(
          "tbody",
          {},
          rows.map((r) => {
            const number = r.revision_number;
            const label = number > production ? "Promote" : "Roll back";
            return h(
              "tr",
              { dataset: { revision: String(number) } },
              h("td", { "data-label": "Revision" }, `r${number}`),
              h("td", { "data-label": "Created" }, new Date(r.created * 1000).toLocaleString()),
              h("td", { "data-label": "Handler" }, h("code", {}, r.handler)),
              h("td", { "data-label": "Runtime" }, r.runtime),
              h("td", { "data-label": "Timeout" }, `${r.timeout} ms`),
              h("td", { "data-label": "Memory" }, r.size),
              h("td", { "data-label": "Aliases" }, r.aliases.map((a) => h("span", { class: a === "production" ? "chip prod" : "chip" }, a))),
              h(
                "td",
                {},
                number === production
                  ? h("span", { class: "muted" }, "in production")
                  : h("button", { type: "button", "aria-label": `${label} to r${number}`, onclick: () => move("production", number, false) }, label),
              ),
            );
          }),
        ),
      ),
    );
  }
  load().catch((error) => replace(table, errorNotice(error)));
}
