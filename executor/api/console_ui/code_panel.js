// The bundle's files, read-only: text files shown, binaries and archives named with their size.
import { h, replace } from "./dom.js";

function decode(asset) {
  const bytes = Uint8Array.from(atob(asset.asset_value), (c) => c.charCodeAt(0));
  if (asset.link) return { note: `symbolic link to ${new TextDecoder().decode(bytes)}` };
  if (asset.asset_type === "archive") return { note: `archive, ${bytes.length} bytes, unpacked in place` };
  try {
    const text = new TextDecoder("utf-8", { fatal: true }).decode(bytes);
    if (!text.includes("\0")) return { text };
  } catch {
    // not UTF-8: shown as binary
  }
  return { note: `binary file, ${bytes.length} bytes` };
}

export function showCode(panel, { fn }) {
  const assets = fn.compute_asset.assets || [];
  if (!assets.length) {
    replace(panel, h("p", { class: "muted" }, "This revision has no files."));
    return;
  }
  const view = h("div", { class: "file-view" });
  const pick = h("select", { id: "code-file", "aria-label": "File" }, assets.map((a, i) => h("option", { value: String(i) }, a.asset_name)));
  const show = () => {
    const asset = assets[Number(pick.value)];
    const shown = decode(asset);
    replace(
      view,
      h("h3", {}, asset.asset_name),
      shown.text !== undefined ? h("pre", { class: "code source", tabindex: "0" }, h("code", {}, shown.text)) : h("p", { class: "muted" }, shown.note),
    );
  };
  pick.addEventListener("change", show);
  replace(panel, h("h2", {}, "Code"), h("p", {}, `Revision r${fn.revision}, ${assets.length} file${assets.length === 1 ? "" : "s"}. `, h("label", {}, "File ", pick)), view);
  show();
}
