// Building the page: elements with text (never HTML: names, logs and results are user data).

export function h(tag, attrs = {}, ...children) {
  const element = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on")) element.addEventListener(key.slice(2), value);
    else if (key === "class") element.className = value;
    else if (key === "dataset") Object.assign(element.dataset, value);
    else element.setAttribute(key, value === true ? "" : value);
  }
  append(element, children);
  return element;
}

export function append(element, children) {
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    element.append(child instanceof Node ? child : String(child));
  }
  return element;
}

export function replace(element, ...children) {
  element.replaceChildren();
  return append(element, children);
}

export function svg(tag, attrs = {}, ...children) {
  const element = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [key, value] of Object.entries(attrs)) element.setAttribute(key, value);
  for (const child of children) element.append(child);
  return element;
}

export function json(value) {
  return JSON.stringify(value, null, 2);
}

export function ms(value) {
  if (value === null || value === undefined) return "–";
  return value < 10 ? `${value.toFixed(2)} ms` : value < 1000 ? `${value.toFixed(0)} ms` : `${(value / 1000).toFixed(2)} s`;
}

export function percent(rate) {
  return rate === null || rate === undefined ? "–" : `${(rate * 100).toFixed(rate && rate < 0.01 ? 2 : 1)}%`;
}

export function when(unixMs) {
  const date = new Date(unixMs);
  const today = new Date().toDateString() === date.toDateString();
  return today ? date.toLocaleTimeString() : date.toLocaleString();
}

// A message region that screen readers announce.
export function notice(kind, ...children) {
  return h("div", { class: `notice ${kind}`, role: kind === "error" ? "alert" : "status" }, ...children);
}

// An API error as the page shows it: the sentence, the code and status, every detail.
export function errorNotice(error, ...more) {
  const details = (error.details || []).map((d) =>
    h("li", {}, d.path ? h("code", {}, d.path) : null, d.path ? " " : null, d.message ?? json(d)),
  );
  return notice(
    "error",
    h("strong", {}, error.message),
    error.status ? h("span", { class: "muted" }, ` (${error.status}${error.code ? ` ${error.code}` : ""})`) : null,
    details.length ? h("ul", { class: "details" }, details) : null,
    ...more,
  );
}
