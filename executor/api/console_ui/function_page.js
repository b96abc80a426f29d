// One function: a header and a tab per view. Each tab's module draws into the panel and
// returns what stops it (a live stream, a timer) when the user moves on.
import { fnPath, get } from "./api.js";
import { errorNotice, h, replace } from "./dom.js";
import { showCharts } from "./charts_panel.js";
import { showCode } from "./code_panel.js";
import { showConfig } from "./config_panel.js";
import { showInvocations } from "./invocations_panel.js";
import { showInvoke } from "./invoke_panel.js";
import { showRevisions } from "./revisions_panel.js";

const TABS = [
  ["overview", "Overview", showConfig],
  ["code", "Code", showCode],
  ["revisions", "Revisions", showRevisions],
  ["invoke", "Invoke", showInvoke],
  ["invocations", "Invocations", showInvocations],
  ["charts", "Charts", showCharts],
];

export function showFunction(view, ct, ft, tab) {
  const panel = h("section", { id: "panel", class: "panel" }, h("p", { class: "muted" }, "Loading…"));
  const heading = h("h1", {}, ft);
  const meta = h("p", { class: "muted meta" }, `${ct} / ${ft}`);
  const base = `#/functions/${encodeURIComponent(ct)}/${encodeURIComponent(ft)}`;
  const tabs = h(
    "nav",
    { class: "tabs", "aria-label": "Function views" },
    TABS.map(([name, label]) =>
      h("a", { href: name === "overview" ? base : `${base}/${name}`, "aria-current": name === tab ? "page" : null }, label),
    ),
  );
  replace(view, h("p", { class: "crumbs" }, h("a", { href: "#/" }, "Functions"), " / ", ct), heading, meta, tabs, panel);
  const found = TABS.find(([name]) => name === tab);
  if (!found) {
    replace(panel, errorNotice(new Error(`no view “${tab}”`)));
    return () => {};
  }
  let stop = () => {};
  let left = false;
  const abort = new AbortController();
  get(fnPath(ct, ft), {}, abort.signal)
    .then(({ body: fn }) => {
      if (left) return;
      heading.textContent = fn.name;
      const describe = (production) =>
        replace(meta, `${ct} / ${ft} · ${fn.runtime} · production r${production}`, " · ", h("code", {}, fn.subject));
      describe(fn.aliases?.production ?? fn.revision);
      document.title = `${fn.name} · computebus`;
      stop = found[2](panel, { ct, ft, fn, productionMoved: describe }) || (() => {});
    })
    .catch((error) => left || replace(panel, errorNotice(error)));
  return () => {
    left = true;
    abort.abort();
    stop();
    document.title = "computebus console";
  };
}
