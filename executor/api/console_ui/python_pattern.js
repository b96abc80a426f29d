// A schema's "pattern" as the server runs it (the `regex` module's search(), no flags) turned
// into a JS RegExp with the `u` flag, or null where the two could disagree.
//
// Translated so that they agree: \d \s \w (and their negations, and \b \B) are Unicode classes
// in Python, ASCII in JS; "." stops only at "\n" in Python; "$" also matches before a final
// "\n" in Python; \A \Z; (?P<name>...) and (?P=name); "\-"-style escapes of punctuation, which
// the `u` flag refuses. Refused (null): inline flags such as (?i), atomic groups, possessive
// quantifiers, "[]...]" and anything else the browser will not compile with the `u` flag
// (octal escapes, "\U", "\N{...}", a lone "{", POSIX classes). \p{...} names are passed
// through: where both accept a name they are taken to mean the same. Also refused: a repeated
// group that itself repeats or alternates, such as "(a+)+" or "(a|aa)*", which the browser's
// backtracking engine can take exponential time over (the server's check has a time budget;
// a browser tab has none).

const WORD = String.raw`\p{Alphabetic}\p{M}\p{Nd}\p{Pc}\p{Join_Control}`;
const BOUNDARY = `(?:(?<=[${WORD}])(?![${WORD}])|(?<![${WORD}])(?=[${WORD}]))`;
const INSIDE_CLASS = {
  d: String.raw`\p{Nd}`,
  D: String.raw`\P{Nd}`,
  s: String.raw`\p{White_Space}`,
  S: String.raw`\P{White_Space}`,
  w: WORD,
};
const OUTSIDE_CLASS = {
  ...INSIDE_CLASS,
  w: `[${WORD}]`,
  W: `[^${WORD}]`,
  b: BOUNDARY,
  B: `(?:(?<=[${WORD}])(?=[${WORD}])|(?<![${WORD}])(?![${WORD}]))`,
  A: "^",
  Z: String.raw`(?![\s\S])`,
};
// What may follow "(?" as it is: non-capturing, lookarounds, named groups.
const GROUP_OPENING = /^(?::|=|!|<=|<!|<[A-Za-z_][A-Za-z0-9_]*>)/;

const compiled = new Map();

export function pythonPattern(source) {
  if (!compiled.has(source)) compiled.set(source, compile(source));
  return compiled.get(source);
}

function compile(source) {
  if (mayBacktrackForever(source)) return null;
  const out = translate(source);
  if (out === null) return null;
  try {
    return new RegExp(out, "u");
  } catch {
    return null;
  }
}

function translate(source) {
  let out = "";
  let inClass = false;
  for (let i = 0; i < source.length; i++) {
    const char = source[i];
    const rest = source.slice(i + 1);
    if (char === "\\") {
      if (i + 1 >= source.length) return null;
      const next = String.fromCodePoint(source.codePointAt(i + 1));
      i += next.length;
      const table = inClass ? INSIDE_CLASS : OUTSIDE_CLASS;
      if (Object.hasOwn(table, next)) out += table[next];
      else if (inClass && "WBAZ".includes(next)) return null; // no Unicode form inside a class
      else if (/^[A-Za-z0-9]$/.test(next)) out += "\\" + next;
      else out += `\\u{${next.codePointAt(0).toString(16)}}`;
    } else if (inClass) {
      inClass = char !== "]";
      out += char;
    } else if (char === "[") {
      if (/^\^?\]/.test(rest)) return null; // Python's "[]a]" holds a "]"; JS's "[]" is empty
      inClass = true;
      out += char;
    } else if (char === ".") {
      out += "[^\\n]";
    } else if (char === "$") {
      out += String.raw`(?=\n?(?![\s\S]))`;
    } else if (char === "(" && rest.startsWith("?")) {
      const named = /^\?P(<[^>]*>|=[^)]*\))/.exec(rest);
      if (named && named[1][0] === "<") out += "(?" + named[1];
      else if (named) out += `\\k<${named[1].slice(1, -1)}>`;
      else if (GROUP_OPENING.test(rest.slice(1))) out += "(?";
      else return null;
      i += named ? named[0].length : 1;
    } else {
      out += char;
    }
  }
  return out;
}

// Whether a quantified group holds a quantifier or an alternation (outside character classes).
function mayBacktrackForever(source) {
  const groups = []; // per open group: whether it repeats or alternates inside
  let inClass = false;
  for (let i = 0; i < source.length; i++) {
    const char = source[i];
    if (char === "\\") {
      i++;
    } else if (inClass) {
      inClass = char !== "]";
    } else if (char === "[") {
      inClass = true;
    } else if (char === "(") {
      groups.push(false);
    } else if (char === ")") {
      const risky = groups.pop();
      if (risky && /^[*+{]/.test(source.slice(i + 1))) return true;
      if (risky && groups.length) groups[groups.length - 1] = true;
      if (/^[*+{]/.test(source.slice(i + 1)) && groups.length) groups[groups.length - 1] = true;
    } else if ("*+{|".includes(char) && groups.length) {
      groups[groups.length - 1] = true;
    }
  }
  return false;
}
