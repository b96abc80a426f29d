// The public HTTP API, as any script would call it: a bearer token from this browser's
// storage, JSON in and out, errors as ApiError with the server's code and details.
const TOKEN_KEY = "computebus.token";
const base = new URL("./", document.baseURI); // the API's root, also behind a path prefix

export class ApiError extends Error {
  constructor(status, answer) {
    super(answer?.error || `HTTP ${status}`);
    this.status = status;
    this.code = answer?.code || "";
    this.details = Array.isArray(answer?.details) ? answer.details : [];
    this.answer = answer;
  }
}

let onUnauthorized = () => {};
export function whenUnauthorized(callback) {
  onUnauthorized = callback;
}

export function token() {
  return sessionStorage.getItem(TOKEN_KEY) || localStorage.getItem(TOKEN_KEY) || "";
}

export function setToken(value, remember) {
  sessionStorage.removeItem(TOKEN_KEY);
  localStorage.removeItem(TOKEN_KEY);
  if (value) (remember ? localStorage : sessionStorage).setItem(TOKEN_KEY, value);
}

export function url(path, query = {}) {
  const target = new URL(path.replace(/^\//, ""), base);
  for (const [key, value] of Object.entries(query)) {
    if (value !== undefined && value !== null && value !== "") target.searchParams.set(key, value);
  }
  return target;
}

export function authHeaders() {
  const value = token();
  return value ? { Authorization: `Bearer ${value}` } : {};
}

// One call; resolves to {status, body, headers, elapsedMs}, rejects with ApiError.
export async function call(method, path, { query, body, signal } = {}) {
  const headers = { Accept: "application/json", ...authHeaders() };
  const init = { method, headers, signal };
  if (body !== undefined) {
    init.body = JSON.stringify(body);
    headers["Content-Type"] = "application/json";
  }
  const started = performance.now();
  const response = await fetch(url(path, query), init);
  const text = await response.text();
  const elapsedMs = performance.now() - started;
  let answer = null;
  try {
    answer = text ? JSON.parse(text) : null;
  } catch {
    answer = { error: text.slice(0, 500) };
  }
  if (!response.ok) {
    const error = new ApiError(response.status, answer);
    error.headers = response.headers;
    error.elapsedMs = elapsedMs;
    if (response.status === 401) onUnauthorized(error);
    throw error;
  }
  return { status: response.status, body: answer?.body, headers: response.headers, elapsedMs };
}

export const get = (path, query, signal) => call("GET", path, { query, signal });

export function fnPath(ct, ft, rest = "") {
  return `compute/functions/${encodeURIComponent(ct)}/${encodeURIComponent(ft)}${rest}`;
}
