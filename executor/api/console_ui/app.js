// The console's frame: the token dialog and the router (#/ and #/functions/<ct>/<ft>/<tab>).
import { setToken, token, whenUnauthorized } from "./api.js";
import { h, replace } from "./dom.js";
import { showFunction } from "./function_page.js";
import { showFunctions } from "./functions_page.js";

const view = document.getElementById("view");
const dialog = document.getElementById("token-dialog");
const tokenInput = document.getElementById("token-input");
let leave = () => {}; // stops the current page's live stream and timers

function askForToken(reason) {
  if (dialog.open) return;
  document.getElementById("token-reason").textContent = reason;
  tokenInput.value = token();
  dialog.showModal();
  tokenInput.focus();
}

dialog.addEventListener("close", () => {
  if (dialog.returnValue === "save") {
    setToken(tokenInput.value.trim(), document.getElementById("token-remember").checked);
    tokenButtonLabel();
  }
  route();
  view.focus({ preventScroll: true }); // the keyboard goes on from the page, not the top bar
});

function tokenButtonLabel() {
  document.getElementById("token-button").textContent = token() ? "Token ✓" : "Set token";
}

document.getElementById("token-button").addEventListener("click", () =>
  askForToken("Paste a token; it stays in this browser and goes only to this API."),
);

whenUnauthorized((error) => {
  document.getElementById("token-button").textContent = token() ? "Token refused" : "Set token";
  const sentence = token() ? "That token was refused: " : "The API needs a token: ";
  askForToken(sentence + error.message);
});

const ROUTES = [
  [/^#?\/?$/, () => showFunctions(view)],
  [
    /^#\/functions\/([^/]+)\/([^/]+)(?:\/([a-z]+))?$/,
    (m) => showFunction(view, decodeURIComponent(m[1]), decodeURIComponent(m[2]), m[3] || "overview"),
  ],
];

function route() {
  leave();
  leave = () => {};
  for (const [pattern, show] of ROUTES) {
    const match = location.hash.match(pattern);
    if (match && decodes(match)) {
      leave = show(match) || (() => {});
      return;
    }
  }
  replace(view, h("h1", {}, "Not found"), h("p", {}, h("a", { href: "#/" }, "All functions")));
}

// A hand-made address with a broken %-escape is "Not found", not an uncaught error.
function decodes(match) {
  try {
    match.slice(1).forEach((part) => part && decodeURIComponent(part));
    return true;
  } catch {
    return false;
  }
}

window.addEventListener("hashchange", () => {
  route();
  view.focus({ preventScroll: true });
});
tokenButtonLabel();
if (token()) route();
else askForToken("Paste a token to use the API (Cancel tries without one).");
