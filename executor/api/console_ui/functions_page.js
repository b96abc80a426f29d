// Every function the token can read, by collection, with the last hour's invocations and error
// rate (one stats call per collection), and a filter box.
import { get, url } from "./api.js";
import { errorNotice, h, ms, notice, percent, replace } from "./dom.js";

export function showFunctions(view) {
  const filter = h("input", {
    id: "function-filter",
    type: "search",
    placeholder: "name, collection or id",
    "aria-label": "Filter functions",
  });
  const list = h("div", { id: "function-list" }, h("p", { class: "muted" }, "Loading…"));
  const sandbox = h("div", { id: "sandbox" });
  replace(
    view,
    h("div", { class: "title-row" }, h("h1", {}, "Functions"), h("label", { class: "filter" }, "Filter ", filter)),
    sandbox,
    list,
  );
  showSandbox(sandbox);
  let functions = [];
  let stats = new Map();
  const draw = () => drawList(list, functions, stats, filter.value.trim().toLowerCase());
  filter.addEventListener("input", draw);
  const abort = new AbortController();
  load(abort.signal)
    .then((loaded) => {
      ({ functions, stats } = loaded);
      draw();
    })
    .catch((error) => abort.signal.aborted || replace(list, errorNotice(error)));
  return () => abort.abort();
}

async function load(signal) {
  const functions = [];
  for (let offset = 0; ; offset += 1000) {
    const page = (await get("compute/functions", { limit: 1000, offset }, signal)).body;
    functions.push(...page.results);
    if (functions.length >= page.results_total || !page.results.length) break;
  }
  const collections = [...new Set(functions.map((f) => f.compute_asset.collection_topic))];
  const stats = new Map();
  await Promise.all(
    collections.map(async (ct) => {
      try {
        const rows = (await get(`compute/collections/${encodeURIComponent(ct)}/stats`, { window: 3600 }, signal)).body;
        for (const row of rows.results) stats.set(`${ct}/${row.service}`, row);
      } catch (error) {
        if (signal.aborted) throw error; // else: the figures stay blank; the list still shows
      }
    }),
  );
  return { functions, stats };
}

function drawList(list, functions, stats, needle) {
  const shown = functions.filter((f) => {
    const text = `${f.name} ${f.compute_asset.collection_topic} ${f.compute_asset.service} ${f.runtime}`;
    return text.toLowerCase().includes(needle);
  });
  if (!functions.length) {
    replace(list, h("p", {}, "No functions yet. Create one with ", h("code", {}, "POST /compute/functions"), " or ", h("code", {}, "computebus deploy"), "."));
    return;
  }
  if (!shown.length) {
    replace(list, h("p", { class: "muted" }, `No function matches “${needle}”.`));
    return;
  }
  const byCollection = Map.groupBy(shown, (f) => f.compute_asset.collection_topic);
  replace(
    list,
    [...byCollection.keys()].sort().map((ct) =>
      h(
        "section",
        { class: "collection", "aria-label": `Collection ${ct}` },
        h("h2", {}, ct),
        h(
          "table",
          { class: "functions" },
          h("thead", {}, h("tr", {}, ["Function", "Service", "Runtime", "Production", "Invocations (1 h)", "Errors", "p95"].map((t, i) => h("th", { scope: "col", class: i >= 4 ? "num" : null }, t)))),
          h("tbody", {}, byCollection.get(ct).sort((a, b) => a.name.localeCompare(b.name)).map((f) => row(f, stats))),
        ),
      ),
    ),
  );
}

function row(f, stats) {
  const { collection_topic: ct, service } = f.compute_asset;
  const figures = stats.get(`${ct}/${service}`);
  const href = `#/functions/${encodeURIComponent(ct)}/${encodeURIComponent(service)}`;
  return h(
    "tr",
    { dataset: { service } },
    h("td", { "data-label": "Function" }, h("a", { href }, f.name)),
    h("td", { "data-label": "Service" }, h("code", {}, service)),
    h("td", { "data-label": "Runtime" }, f.runtime),
    h("td", { "data-label": "Production" }, f.revision !== undefined ? `r${f.revision}` : "–"),
    h("td", { "data-label": "Invocations (1 h)", class: "num" }, figures ? String(figures.invocations) : "0"),
    h("td", { "data-label": "Errors", class: `num${figures?.errors ? " bad" : ""}` }, figures ? percent(figures.error_rate) : "–"),
    h("td", { "data-label": "p95", class: "num" }, figures ? ms(figures.p95_ms) : "–"),
  );
}

// How handlers are isolated (GET /readyz, open to all), and a warning when the sandbox is the
// weaker one a machine without bubblewrap or cgroups gets.
async function showSandbox(area) {
  let state;
  try {
    state = await (await fetch(url("readyz"))).json();
  } catch {
    return;
  }
  const level = Array.isArray(state.isolation) ? state.isolation.join(", ") : state.isolation;
  if (!level) {
    replace(area, notice("error", "No worker is running: invocations will fail until one starts (computebus worker)."));
  } else if (state.isolation_gaps?.length) {
    replace(area, notice("error", `Handlers run in the weaker ${level} sandbox: ${state.isolation_gaps.join("; ")}.`));
  } else {
    replace(area, h("p", { class: "muted" }, `Handlers run in the ${level} sandbox.`));
  }
}
