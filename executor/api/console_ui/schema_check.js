// The server's schema check, in the browser: validate() gives the `details` of the 400
// `invalid_input` the server answers for a payload (schemas/validation.py: jsonschema's
// iter_errors, the keywords replaced in schemas/validation_guards.py, at most 20 errors), in the
// same order: keywords in the schema's order, as iter_errors walks them. `format` is not
// asserted (the server builds its validators without a format checker).
//
// Where validate() cannot be sure (a keyword it does not implement, a pattern it cannot
// translate, a $ref it cannot resolve locally) it checks the rest and reports only errors the
// server reports too; understands(schema) says whether it is sure for every value.
import { pythonPattern } from "./python_pattern.js";
import { byCodePoint, isPythonInt, pyRepr } from "./python_repr.js";

const MAX_REPORTED = 20; // schemas/validation.py MAX_REPORTED_ERRORS

// Every keyword jsonschema validates in some draft; the rest are annotations it ignores.
const SERVER_KEYWORDS = new Set([
  "$dynamicRef", "$recursiveRef", "$ref", "additionalItems", "additionalProperties", "allOf",
  "anyOf", "const", "contains", "dependencies", "dependentRequired", "dependentSchemas",
  "disallow", "divisibleBy", "enum", "exclusiveMaximum", "exclusiveMinimum", "extends", "format",
  "if", "items", "maxItems", "maxLength", "maxProperties", "maximum", "minItems", "minLength",
  "minProperties", "minimum", "multipleOf", "not", "oneOf", "pattern", "patternProperties",
  "prefixItems", "properties", "propertyNames", "required", "type", "unevaluatedItems",
  "unevaluatedProperties", "uniqueItems",
]);
// What is checked here per draft: the keywords jsonschema implements there as in 2020-12.
const SINCE_4 = [
  "$ref", "additionalProperties", "allOf", "anyOf", "enum", "format", "maxItems", "maxLength",
  "maxProperties", "minItems", "minLength", "minProperties", "multipleOf", "not", "oneOf",
  "pattern", "patternProperties", "properties", "required", "type", "uniqueItems",
];
const SINCE_6 = [
  ...SINCE_4, "const", "exclusiveMaximum", "exclusiveMinimum", "maximum", "minimum",
  "propertyNames",
];
const SINCE_2019 = [...SINCE_6, "if", "contains", "dependentRequired", "dependentSchemas"];
const CHECKED = {
  3: [], 4: SINCE_4, 6: SINCE_6, 7: [...SINCE_6, "if"], 2019: SINCE_2019,
  2020: [...SINCE_2019, "items", "prefixItems"],
};
const DRAFTS = {
  "http://json-schema.org/draft-03/schema": 3,
  "http://json-schema.org/draft-04/schema": 4,
  "http://json-schema.org/draft-06/schema": 6,
  "http://json-schema.org/draft-07/schema": 7,
  "https://json-schema.org/draft/2019-09/schema": 2019,
  "https://json-schema.org/draft/2020-12/schema": 2020,
};

// A schema can be written to make checking explode (nested $refs that fan out): past this many
// subschema visits the page stops and leaves the verdict to the server, which has a time budget
// of its own, rather than freeze the tab.
const MAX_STEPS = 100_000;

class TooLong extends Error {}

export function validate(schema, value) {
  if (schema === null || schema === undefined || schema === true) return [];
  if (isObject(schema) && Object.keys(schema).length === 0) return [];
  const found = [];
  try {
    for (const error of errorsOf(contextFor(schema), schema, value, [])) {
      found.push(error);
      if (found.length >= MAX_REPORTED) break;
    }
  } catch (error) {
    if (error instanceof TooLong) return [];
    throw error;
  }
  return found;
}

export function understands(schema) {
  if (typeof schema === "boolean" || schema === null || schema === undefined) return true;
  const context = contextFor(schema);
  return context.draft !== "unknown" && context.draft !== 3 && knows(context, schema);
}

function contextFor(schema) {
  const draft = draftOf(schema);
  const unknown = draft === "unknown";
  const idKeyword = draft === 3 || draft === 4 ? "id" : "$id";
  const ids = JSON.stringify(schema).split(`"${idKeyword}":`).length - 1;
  return {
    root: schema,
    draft,
    // An unrecognised json-schema.org $schema: the common subset, minus $ref and its siblings.
    keywords: new Set(unknown ? SINCE_4.filter((k) => k !== "$ref") : CHECKED[draft]),
    refOnly: unknown || draft < 2019, // up to draft 7, a $ref hides its siblings
    strictInteger: draft === 3 || draft === 4, // there 1e21 (a float) is not an integer
    // "#/..." resolves against the root only while no subschema declares its own base URI.
    localRefs: ids <= (isObject(schema) && Object.hasOwn(schema, idKeyword) ? 1 : 0),
    known: new Map(),
    steps: 0,
  };
}

// jsonschema's validator_for: the root's $schema, looked up as urlsplit().geturl() spells it.
function draftOf(schema) {
  if (!isObject(schema) || !Object.hasOwn(schema, "$schema")) return 2020;
  const uri = String(schema.$schema)
    .replace(/^[A-Za-z][A-Za-z0-9+.-]*:/, (scheme) => scheme.toLowerCase())
    .replace(/\??#?$/, "");
  if (Object.hasOwn(DRAFTS, uri)) return DRAFTS[uri];
  return /json-schema\.org/i.test(uri) ? "unknown" : 2020;
}

// jsonschema's descend(): `key` (a property or an index), when given, extends the path; a false
// schema's error stays at the path it was reached from, as jsonschema reports it.
function* errorsOf(context, schema, instance, from, key) {
  if (schema === false) {
    yield fail(from, `False schema does not allow ${pyRepr(instance)}`);
    return;
  }
  if (++context.steps > MAX_STEPS) throw new TooLong();
  const path = key === undefined ? from : [...from, key];
  if (!isObject(schema) || switchesDraft(context, schema)) return;
  for (const [keyword, value] of entriesOf(context, schema)) {
    if (!context.keywords.has(keyword)) continue;
    yield* CHECKS[keyword](context, value, instance, schema, path);
  }
}

function isValid(context, schema, instance) {
  return errorsOf(context, schema, instance, []).next().done;
}

const CHECKS = {
  *$ref(context, ref, instance, schema, path) {
    const target = resolve(context, ref);
    if (target !== undefined) yield* errorsOf(context, target, instance, path);
  },
  *additionalProperties(context, extra, instance, schema, path) {
    const extras = isObject(instance) ? extraKeys(schema, instance) : null;
    if (extras === null) return;
    if (isObject(extra)) {
      for (const key of extras) yield* errorsOf(context, extra, instance[key], path, key);
    } else if (extra === false && extras.length > 0) {
      const listed = extras.sort(byCodePoint).map(pyRepr).join(", ");
      yield fail(path, `additional properties are not allowed (${listed})`);
    }
  },
  *allOf(context, schemas, instance, schema, path) {
    for (const each of schemas) yield* errorsOf(context, each, instance, path);
  },
  *anyOf(context, schemas, instance, schema, path) {
    if (!schemas.every((each) => knows(context, each))) return;
    if (!schemas.some((each) => isValid(context, each, instance))) {
      yield fail(path, `${pyRepr(instance)} is not valid under any of the given schemas`);
    }
  },
  *const(context, expected, instance, schema, path) {
    if (!equal(instance, expected)) yield fail(path, `${pyRepr(expected)} was expected`);
  },
  *contains(context, contains, instance, schema, path) {
    if (!Array.isArray(instance) || !knows(context, contains)) return;
    const least = schema.minContains ?? 1;
    const most = schema.maxContains ?? instance.length;
    let matches = 0;
    for (const item of instance) {
      if (isValid(context, contains, item) && ++matches > most) {
        const words = `expected at most ${pyRepr(most)}`;
        yield fail(path, `Too many items match the given schema (${words})`);
        return;
      }
    }
    if (matches === 0 && least > 0) {
      yield fail(path, `${pyRepr(instance)} does not contain items matching the given schema`);
    } else if (matches < least) {
      yield fail(path, "Too few items match the given schema (expected at least " +
        `${pyRepr(least)} but only ${matches} matched)`);
    }
  },
  *dependentRequired(context, dependencies, instance, schema, path) {
    if (!isObject(instance)) return;
    for (const [property, needed] of Object.entries(dependencies)) {
      if (!Object.hasOwn(instance, property)) continue;
      for (const each of needed) {
        if (!Object.hasOwn(instance, each)) {
          yield fail(path, `${pyRepr(each)} is a dependency of ${pyRepr(property)}`);
        }
      }
    }
  },
  *dependentSchemas(context, dependencies, instance, schema, path) {
    if (!isObject(instance)) return;
    for (const [property, dependency] of Object.entries(dependencies)) {
      if (Object.hasOwn(instance, property)) yield* errorsOf(context, dependency, instance, path);
    }
  },
  *enum(context, choices, instance, schema, path) {
    if (!choices.some((each) => equal(each, instance))) {
      yield fail(path, `${pyRepr(instance)} is not one of ${pyRepr(choices)}`);
    }
  },
  exclusiveMaximum: bound((n, limit) => n >= limit, "is greater than or equal to the maximum of"),
  exclusiveMinimum: bound((n, limit) => n <= limit, "is less than or equal to the minimum of"),
  *format() {},
  *if(context, condition, instance, schema, path) {
    if (!knows(context, condition)) return;
    const branch = isValid(context, condition, instance) ? "then" : "else";
    if (Object.hasOwn(schema, branch)) yield* errorsOf(context, schema[branch], instance, path);
  },
  *items(context, items, instance, schema, path) {
    if (!Array.isArray(instance)) return;
    const prefix = (schema.prefixItems ?? []).length;
    const extra = instance.length - prefix;
    if (extra <= 0) return;
    if (items === false) {
      const rest = extra !== 1 ? instance.slice(prefix) : instance[prefix];
      const noun = prefix !== 1 ? "items" : "item";
      const found = `found ${extra} extra: ${pyRepr(rest)}`;
      yield fail(path, `Expected at most ${prefix} ${noun} but ${found}`);
      return;
    }
    for (let index = prefix; index < instance.length; index++) {
      yield* errorsOf(context, items, instance[index], path, index);
    }
  },
  maxItems: most(itemCount, "is too long"),
  maxLength: most(length, "is too long"),
  maxProperties: most(propertyCount, "has too many properties"),
  maximum: bound((n, limit) => n > limit, "is greater than the maximum of"),
  minItems: least(itemCount, "is too short"),
  minLength: least(length, "is too short"),
  minProperties: least(propertyCount, "does not have enough properties"),
  minimum: bound((n, limit) => n < limit, "is less than the minimum of"),
  *multipleOf(context, divisor, instance, schema, path) {
    if (typeof instance !== "number") return;
    let failed;
    if (isPythonInt(divisor)) {
      failed = instance % divisor !== 0;
    } else {
      const quotient = instance / divisor;
      // Python goes on with exact fractions when the quotient overflows: not checked here.
      if (!Number.isFinite(quotient)) return;
      failed = Math.trunc(quotient) !== quotient;
    }
    if (failed) yield fail(path, `${pyRepr(instance)} is not a multiple of ${pyRepr(divisor)}`);
  },
  *not(context, forbidden, instance, schema, path) {
    if (knows(context, forbidden) && isValid(context, forbidden, instance)) {
      yield fail(path, `${pyRepr(instance)} should not be valid under ${pyRepr(forbidden)}`);
    }
  },
  *oneOf(context, schemas, instance, schema, path) {
    if (!schemas.every((each) => knows(context, each))) return;
    const valid = schemas.filter((each) => isValid(context, each, instance));
    if (valid.length === 0) {
      yield fail(path, `${pyRepr(instance)} is not valid under any of the given schemas`);
    } else if (valid.length > 1) {
      const [first, ...more] = valid; // jsonschema lists the first valid one last
      const listed = [...more, first].map(pyRepr).join(", ");
      yield fail(path, `${pyRepr(instance)} is valid under each of ${listed}`);
    }
  },
  *pattern(context, pattern, instance, schema, path) {
    const search = typeof instance === "string" ? pythonPattern(pattern) : null;
    if (search !== null && !search.test(instance)) {
      yield fail(path, `${pyRepr(instance)} does not match ${pyRepr(pattern)}`);
    }
  },
  *patternProperties(context, patterns, instance, schema, path) {
    if (!isObject(instance)) return;
    for (const [pattern, subschema] of Object.entries(patterns)) {
      const search = pythonPattern(pattern);
      for (const key of Object.keys(instance)) {
        if (search?.test(key)) yield* errorsOf(context, subschema, instance[key], path, key);
      }
    }
  },
  *prefixItems(context, schemas, instance, schema, path) {
    if (!Array.isArray(instance)) return;
    for (let index = 0; index < Math.min(schemas.length, instance.length); index++) {
      yield* errorsOf(context, schemas[index], instance[index], path, index);
    }
  },
  *properties(context, properties, instance, schema, path) {
    if (!isObject(instance)) return;
    for (const [name, subschema] of Object.entries(properties)) {
      if (Object.hasOwn(instance, name)) {
        yield* errorsOf(context, subschema, instance[name], path, name);
      }
    }
  },
  *propertyNames(context, names, instance, schema, path) {
    if (!isObject(instance)) return;
    for (const key of Object.keys(instance)) yield* errorsOf(context, names, key, path);
  },
  *required(context, required, instance, schema, path) {
    if (!isObject(instance)) return;
    for (const name of required) {
      if (Object.hasOwn(instance, name)) continue;
      yield fail(path, `${pyRepr(name)} is a required property`);
    }
  },
  *type(context, types, instance, schema, path) {
    const listed = typeof types === "string" ? [types] : types;
    if (!listed.some((type) => isType(context, instance, type))) {
      yield fail(path, `${pyRepr(instance)} is not of type ${listed.map(pyRepr).join(", ")}`);
    }
  },
  *uniqueItems(context, unique, instance, schema, path) {
    if (!unique || !Array.isArray(instance)) return;
    const seen = new Set(instance.map(canonical));
    if (seen.size === instance.length) return;
    yield fail(path, `${pyRepr(instance)} has non-unique elements`);
  },
};

function bound(beyond, words) {
  return function* (context, limit, instance, schema, path) {
    if (typeof instance === "number" && beyond(instance, limit)) {
      yield fail(path, `${pyRepr(instance)} ${words} ${pyRepr(limit)}`);
    }
  };
}

// The min/max keywords on sizes; jsonschema words the limits 0 and 1 apart.
function most(sizeOf, words) {
  return function* (context, limit, instance, schema, path) {
    const size = sizeOf(instance);
    if (size === null || size <= limit) return;
    yield fail(path, `${pyRepr(instance)} ${limit === 0 ? "is expected to be empty" : words}`);
  };
}

function least(sizeOf, words) {
  return function* (context, limit, instance, schema, path) {
    const size = sizeOf(instance);
    if (size === null || size >= limit) return;
    yield fail(path, `${pyRepr(instance)} ${limit === 1 ? "should be non-empty" : words}`);
  };
}

function itemCount(value) {
  return Array.isArray(value) ? value.length : null;
}

function length(value) {
  return typeof value === "string" ? [...value].length : null; // code points, as Python counts
}

function propertyCount(value) {
  return isObject(value) ? Object.keys(value).length : null;
}

// Whether validate() is sure about `schema`: every schema reachable from it uses only keywords
// checked for this draft, patterns that translate and $refs that resolve.
function knows(context, schema) {
  if (!context.known.has(schema)) {
    const seen = new Set();
    const todo = [schema];
    let sure = true;
    while (sure && todo.length > 0) {
      const next = todo.pop();
      if (typeof next === "boolean" || seen.has(next)) continue;
      seen.add(next);
      const inside = subschemasOf(context, next);
      if (inside === null) sure = false;
      else todo.push(...inside);
    }
    context.known.set(schema, sure);
  }
  return context.known.get(schema);
}

// The subschemas `schema` applies, or null when validate() is not sure of `schema` itself.
function subschemasOf(context, schema) {
  if (!isObject(schema) || switchesDraft(context, schema)) return null;
  const found = [];
  for (const [keyword, value] of entriesOf(context, schema)) {
    if (!SERVER_KEYWORDS.has(keyword)) continue;
    if (!context.keywords.has(keyword)) return null;
    if (keyword === "pattern" && pythonPattern(value) === null) return null;
    if (["patternProperties", "additionalProperties"].includes(keyword)
      && extraKeys(schema, {}) === null) return null;
    if (keyword === "$ref") {
      const target = resolve(context, value);
      if (target === undefined) return null;
      found.push(target);
    } else if (keyword === "if") {
      const branches = ["then", "else"].filter((k) => Object.hasOwn(schema, k));
      found.push(value, ...branches.map((k) => schema[k]));
    } else if (["properties", "patternProperties", "dependentSchemas"].includes(keyword)) {
      found.push(...Object.values(value));
    } else if (["prefixItems", "allOf", "anyOf", "oneOf"].includes(keyword)) {
      found.push(...value);
    } else if (ONE_SUBSCHEMA.includes(keyword)) {
      found.push(value);
    }
  }
  return found;
}

const ONE_SUBSCHEMA = ["items", "additionalProperties", "propertyNames", "not", "contains"];

function entriesOf(context, schema) {
  return context.refOnly && Object.hasOwn(schema, "$ref")
    ? [["$ref", schema.$ref]]
    : Object.entries(schema);
}

// jsonschema picks the validator again for a subschema with its own $schema.
function switchesDraft(context, schema) {
  return schema !== context.root && Object.hasOwn(schema, "$schema");
}

// The keys additionalProperties applies to, in the instance's order; null if a pattern of
// patternProperties does not translate.
function extraKeys(schema, instance) {
  const declared = isObject(schema.properties) ? schema.properties : {};
  const searches = Object.keys(schema.patternProperties ?? {}).map(pythonPattern);
  if (searches.includes(null)) return null;
  return Object.keys(instance).filter(
    (key) => !Object.hasOwn(declared, key) && !searches.some((search) => search.test(key)),
  );
}

function resolve(context, ref) {
  if (!context.localRefs || typeof ref !== "string") return undefined;
  if (ref === "#") return context.root;
  if (!ref.startsWith("#/")) return undefined; // an anchor, another document, a URI
  let tokens;
  try {
    tokens = decodeURIComponent(ref.slice(2)).split("/");
  } catch {
    return undefined;
  }
  let node = context.root;
  for (const token of tokens) {
    const key = token.replaceAll("~1", "/").replaceAll("~0", "~");
    if (node === null || typeof node !== "object" || !Object.hasOwn(node, key)) return undefined;
    node = node[key];
  }
  return node;
}

function isType(context, value, type) {
  switch (type) {
    case "array": return Array.isArray(value);
    case "boolean": return typeof value === "boolean";
    case "integer":
      return typeof value === "number"
        && (context.strictInteger ? isPythonInt(value) : Number.isInteger(value));
    case "null": return value === null;
    case "number": return typeof value === "number";
    case "object": return isObject(value);
    case "string": return typeof value === "string";
    default: return false;
  }
}

// jsonschema's equality: true is not 1, 1 is 1.0, lists and objects compare by content.
function equal(a, b) {
  if (Array.isArray(a) && Array.isArray(b)) {
    return a.length === b.length && a.every((item, index) => equal(item, b[index]));
  }
  if (isObject(a) && isObject(b)) {
    const keys = Object.keys(a);
    return keys.length === Object.keys(b).length
      && keys.every((key) => Object.hasOwn(b, key) && equal(a[key], b[key]));
  }
  return a === b;
}

// One string per distinct JSON value under equal().
function canonical(value) {
  if (Array.isArray(value)) return `[${value.map(canonical).join(",")}]`;
  if (isObject(value)) {
    const keys = Object.keys(value).sort();
    return `{${keys.map((key) => `${JSON.stringify(key)}:${canonical(value[key])}`).join(",")}}`;
  }
  return JSON.stringify(value);
}

export function isObject(value) {
  return value !== null && typeof value === "object" && !Array.isArray(value);
}

export function pointer(path) {
  const tokens = path.map((part) => "/" + String(part).replaceAll("~", "~0").replaceAll("/", "~1"));
  return tokens.join("") || "/";
}

function fail(path, message) {
  return { path: pointer(path), message };
}
