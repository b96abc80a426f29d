// A function's configuration as the API holds it: handler, limits, schemas, monitor and Async.
import { h, json, replace } from "./dom.js";

function facts(rows) {
  return h("dl", { class: "facts" }, rows.filter(([, v]) => v !== undefined).flatMap(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]));
}

export function showConfig(panel, { fn }) {
  const asset = fn.compute_asset;
  const envNames = (asset.env_vars || []).map((pair) => pair.split("=")[0]);
  replace(
    panel,
    h("h2", {}, "Configuration"),
    fn.description ? h("p", {}, fn.description) : null,
    facts([
      ["Handler", h("code", {}, asset.handler)],
      ["Runtime", asset.runtime],
      ["Timeout", `${asset.timeout} ms`],
      ["Memory", fn.size],
      ["Workspace", asset.read_only_fs ? "read-only" : "read-only, private writable /tmp"],
      ["Network", asset.network ? "allowed" : "none"],
      ["Environment", envNames.length ? envNames.join(", ") : "none"],
      ["Revision", `r${fn.revision}`],
      ["Aliases", Object.entries(fn.aliases || {}).map(([a, n]) => `${a} → r${n}`).join(", ") || "none"],
      ["Created", fn.created ? new Date(fn.created * 1000).toLocaleString() : undefined],
      ["Modified", new Date(fn.modified * 1000).toLocaleString()],
    ]),
    h("h2", {}, "Monitor"),
    facts([
      ["Record TTL", `${fn.monitor_config.ttl} ms`],
      ["Payloads in records", fn.monitor_config.store_payload ? "kept" : "not kept"],
    ]),
    fn.async_config
      ? [
          h("h2", {}, "Async"),
          facts([
            ["Attempts", String(fn.async_config.max_attempts)],
            ["Backoff", `${fn.async_config.backoff_ms} ms, at most ${fn.async_config.max_backoff_ms} ms`],
          ]),
        ]
      : null,
    fn.limits
      ? [
          h("h2", {}, "Limits"),
          facts(Object.entries(fn.limits).map(([name, value]) => [name.replaceAll("_", " "), value === null ? "the server's default" : typeof value === "object" ? json(value) : String(value)])),
        ]
      : null,
    h("h2", {}, "Triggers"),
    triggers(fn),
    h("h2", {}, "Input schema"),
    h("pre", { class: "code", id: "schema-input" }, json(fn.schema?.input ?? null)),
    h("h2", {}, "Output schema"),
    h("pre", { class: "code", id: "schema-output" }, json(fn.schema?.output ?? null)),
  );
}

// What starts the function besides its callers: schedules and triggers (HTTP routes, subjects).
function triggers(fn) {
  const rows = [
    ...(fn.schedules || []).map((s) => [
      `schedule ${s.name}`,
      `${s.cron ? `cron ${s.cron}` : `every ${s.every}`}${s.timezone ? ` (${s.timezone})` : ""}`,
    ]),
    ...(fn.triggers || []).map((t) => [`${t.type} ${t.id}`, describeTrigger(t)]),
  ];
  if (!rows.length) return h("p", { class: "muted", id: "triggers" }, "None: it runs when called.");
  return h("ul", { id: "triggers", class: "triggers" }, rows.map(([what, how]) => h("li", {}, h("strong", {}, what), ": ", how)));
}

function describeTrigger(t) {
  const state = t.enabled === false ? " · disabled" : "";
  if (t.type === "http") {
    const split = t.traffic ? Object.entries(t.traffic).map(([n, w]) => `r${n} ${w}%`).join(", ") : "production";
    return `${t.method} /r${t.path} · ${t.public ? "public" : "token"} · ${split}${state}`;
  }
  if (t.type === "subject") return `messages on ${t.source}${t.alias ? ` to ${t.alias}` : ""}${state}`;
  return json(t);
}
