// Python's repr() of a JSON value, as the server's jsonschema messages print it.
//
// The value is the one the server decodes from what JSON.stringify writes, and that decides
// int against float: JSON.stringify writes an integral number below 1e21 without a fraction or
// an exponent ("1.0" typed into a field is sent as 1), so the server holds a Python int; any
// other number arrives with "." or "e" and is a float. JS cannot tell 1.0 from 1, so a number in
// the *schema* written as 1.0 (a float on the server, printed "1.0") prints here as "1".

// The categories str.isprintable() refuses (a space is printable): repr escapes them.
const UNPRINTABLE = /[\p{Cc}\p{Cf}\p{Cs}\p{Co}\p{Cn}\p{Zl}\p{Zp}\p{Zs}]/u;

export function isPythonInt(number) {
  return Number.isInteger(number) && Math.abs(number) < 1e21;
}

export function pyRepr(value) {
  if (value === null) return "None";
  if (value === true) return "True";
  if (value === false) return "False";
  if (typeof value === "number") return pyNumber(value);
  if (typeof value === "string") return pyString(value);
  if (Array.isArray(value)) return `[${value.map(pyRepr).join(", ")}]`;
  const items = Object.entries(value).map(([key, item]) => `${pyString(key)}: ${pyRepr(item)}`);
  return `{${items.join(", ")}}`;
}

function pyNumber(number) {
  if (isPythonInt(number)) return String(number);
  // Both languages print the shortest digits that round-trip; they differ only in when they
  // switch to an exponent (Python below 1e-4 and from 1e16, with at least two exponent digits).
  const [digits, exponent] = number.toExponential().split("e");
  const power = Number(exponent);
  if (power >= -4 && power < 16) return String(number);
  const sign = power < 0 ? "-" : "+";
  return `${digits}e${sign}${String(Math.abs(power)).padStart(2, "0")}`;
}

export function pyString(text) {
  const quote = text.includes("'") && !text.includes('"') ? '"' : "'";
  let out = quote;
  for (const char of text) {
    if (char === quote || char === "\\") out += "\\" + char;
    else if (char === "\n") out += "\\n";
    else if (char === "\r") out += "\\r";
    else if (char === "\t") out += "\\t";
    else if (char !== " " && UNPRINTABLE.test(char)) out += escaped(char.codePointAt(0));
    else out += char;
  }
  return out + quote;
}

function escaped(codePoint) {
  const hex = codePoint.toString(16);
  if (codePoint < 0x100) return "\\x" + hex.padStart(2, "0");
  if (codePoint < 0x10000) return "\\u" + hex.padStart(4, "0");
  return "\\U" + hex.padStart(8, "0");
}

// Python's sorted() order for strings: by code point (JS's default sort compares UTF-16 units).
export function byCodePoint(a, b) {
  const left = [...a];
  const right = [...b];
  for (let i = 0; i < Math.min(left.length, right.length); i++) {
    const diff = left[i].codePointAt(0) - right[i].codePointAt(0);
    if (diff !== 0) return diff;
  }
  return left.length - right.length;
}
