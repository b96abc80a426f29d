// A form for a function's input schema: one field per property of an object schema, read back
// into a payload, with the server's error details shown under the fields they are about.
//
// Built with createElement and textContent only: schemas are user-written. Required controls
// carry aria-required but not the native `required`, which would make the browser stop a submit
// with its own bubble before the server-style messages can show.
import { pyRepr } from "./python_repr.js";
import { isObject, pointer } from "./schema_check.js";

export function formFits(schema) {
  return isObject(schema) && (schema.type === undefined || schema.type === "object")
    && isObject(schema.properties) && Object.keys(schema.properties).length > 0;
}

export function renderForm(schema, container, { idPrefix = "schema-form" } = {}) {
  const fields = new Map(); // JSON pointer -> {node, control, message}
  const children = new Map(); // JSON pointer of an object -> [[property name, its pointer]]
  let count = 0;
  const build = {
    nextId: () => `${idPrefix}-${++count}`,
    field: (path, field) => fields.set(pointer(path), field),
    object: (path, names) => {
      children.set(pointer(path), names.map((name) => [name, pointer([...path, name])]));
    },
  };
  const alert = element("div", "form-errors");
  alert.setAttribute("role", "alert");
  alert.hidden = true;
  const body = element("div", "schema-form");
  const readRoot = objectFields(build, schema, [], schema.default, body);
  container.append(alert, body);

  function clear() {
    for (const { control, message } of fields.values()) {
      message.replaceChildren();
      control?.removeAttribute("aria-invalid");
    }
    alert.replaceChildren();
    alert.hidden = true;
  }

  // The field an error is about: a missing property's own field, else the field at the error's
  // pointer or the nearest one holding it (an item inside a JSON field).
  function fieldFor(path, message) {
    for (const [name, child] of children.get(path) ?? []) {
      const quoted = pyRepr(name);
      const missing = message === `${quoted} is a required property`
        || message.startsWith(`${quoted} is a dependency of `);
      if (missing && fields.has(child)) return fields.get(child);
    }
    for (let at = path; at.length > 1; at = at.slice(0, at.lastIndexOf("/"))) {
      if (fields.has(at)) return fields.get(at);
    }
    return undefined;
  }

  function showErrors(details) {
    clear();
    for (const { path, message } of details) {
      const field = fieldFor(path, message);
      const inside = field !== undefined && fields.get(path) !== field && !children.has(path);
      const line = element("div");
      const located = (field === undefined && path !== "/") || inside;
      line.textContent = located ? `${path}: ${message}` : message;
      if (field === undefined) {
        alert.append(line);
        alert.hidden = false;
      } else {
        field.message.append(line);
        field.control?.setAttribute("aria-invalid", "true");
      }
    }
  }

  function read() {
    const problems = [];
    return { value: readRoot(problems), problems };
  }

  return { read, showErrors, clear };
}

// The fields of an object schema's properties, appended to `parent`; returns their reader.
function objectFields(build, schema, path, defaults, parent) {
  const required = new Set(Array.isArray(schema.required) ? schema.required : []);
  const readers = [];
  for (const [name, subschema] of Object.entries(schema.properties)) {
    const given = isObject(defaults) && Object.hasOwn(defaults, name) ? defaults[name] : undefined;
    const initial = given !== undefined ? given : subschema?.default;
    const field = propertyField(build, subschema, [...path, name], required.has(name), initial);
    parent.append(field.node);
    readers.push([name, field.read]);
  }
  build.object(path, Object.keys(schema.properties));
  return (problems) => {
    const value = {};
    for (const [name, readField] of readers) {
      const item = readField(problems);
      if (item !== undefined) {
        // defineProperty, as a property named "__proto__" must not set the prototype
        Object.defineProperty(value, name, {
          value: item, enumerable: true, writable: true, configurable: true,
        });
      }
    }
    return value;
  };
}

function propertyField(build, subschema, path, required, initial) {
  const schema = isObject(subschema) ? subschema : {};
  const id = build.nextId();
  const name = String(path[path.length - 1]);
  const message = element("div", "field-error");
  message.id = `${id}-error`;
  const hint = hintFor(schema, `${id}-hint`);
  const described = [hint?.id, message.id].filter(Boolean).join(" ");

  if (formFits(schema)) {
    const node = element("fieldset", "field");
    node.dataset.path = pointer(path);
    node.setAttribute("aria-describedby", described);
    const legend = element("legend");
    legend.append(name, ...requiredMark(required));
    node.append(legend, ...(hint ? [hint] : []), message);
    const readObject = objectFields(build, schema, path, initial, node);
    build.field(path, { node, control: null, message });
    const read = (problems) => {
      const value = readObject(problems);
      return Object.keys(value).length === 0 && !required ? undefined : value;
    };
    return { node, read };
  }

  const { control, read } = controlFor(schema, required, initial, path);
  control.id = id;
  control.setAttribute("aria-describedby", described);
  // A checkbox always gives true or false; aria-required on it would read as "must be checked".
  if (required && control.type !== "checkbox") control.setAttribute("aria-required", "true");
  const node = element("div", "field");
  node.dataset.path = pointer(path);
  const label = element("label");
  label.htmlFor = id;
  label.append(name, ...requiredMark(required));
  node.append(label, ...(hint ? [hint] : []), control, message);
  build.field(path, { node, control, message });
  return { node, read };
}

// The control for one property and its reader: the property's value, undefined when left
// empty (so that a missing required one gets the server's "is a required property"), or a
// problem pushed when what was typed cannot be read.
function controlFor(schema, required, initial, path) {
  if (Array.isArray(schema.enum)) {
    const choices = schema.enum.map((value, index) => [
      String(index), typeof value === "string" ? value : JSON.stringify(value),
    ]);
    const control = select(required ? [] : [["", "(unset)"]], choices);
    const wanted = JSON.stringify(initial);
    const chosen = schema.enum.findIndex((value) => JSON.stringify(value) === wanted);
    if (chosen >= 0) control.value = String(chosen);
    const read = () => (control.value === "" ? undefined : schema.enum[Number(control.value)]);
    return { control, read };
  }
  if (schema.type === "boolean" && required) {
    const control = element("input");
    control.type = "checkbox";
    control.checked = initial === true;
    return { control, read: () => control.checked };
  }
  if (schema.type === "boolean") {
    const control = select([["", "(unset)"]], [["true", "true"], ["false", "false"]]);
    if (typeof initial === "boolean") control.value = String(initial);
    return { control, read: () => (control.value === "" ? undefined : control.value === "true") };
  }
  if (schema.type === "number" || schema.type === "integer") {
    const control = element("input");
    control.type = "number";
    control.step = schema.type === "integer" ? "1" : "any";
    if (typeof schema.minimum === "number") control.min = String(schema.minimum);
    if (typeof schema.maximum === "number") control.max = String(schema.maximum);
    if (typeof initial === "number") control.value = String(initial);
    const read = (problems) => {
      const number = control.value === "" ? undefined : Number(control.value);
      if (control.validity.badInput || (number !== undefined && !Number.isFinite(number))) {
        problems.push({ path: pointer(path), message: "is not a number" });
        return undefined;
      }
      return number;
    };
    return { control, read };
  }
  if (schema.type === "string") {
    const control = element(schema.maxLength > 200 ? "textarea" : "input");
    if (control.tagName === "INPUT") control.type = "text";
    if (typeof initial === "string") control.value = initial;
    return { control, read: () => (control.value === "" ? undefined : control.value) };
  }
  const control = element("textarea", "json");
  control.rows = 3;
  control.spellcheck = false;
  control.placeholder = "JSON";
  if (initial !== undefined) control.value = JSON.stringify(initial, null, 2);
  const read = (problems) => {
    if (control.value.trim() === "") return undefined;
    try {
      return JSON.parse(control.value);
    } catch (error) {
      problems.push({ path: pointer(path), message: `is not valid JSON (${error.message})` });
      return undefined;
    }
  };
  return { control, read };
}

function select(empty, options) {
  const control = element("select");
  for (const [value, text] of [...empty, ...options]) {
    const option = element("option");
    option.value = value;
    option.textContent = text;
    control.append(option);
  }
  return control;
}

function hintFor(schema, id) {
  const text = [schema.title, schema.description].filter((t) => typeof t === "string" && t);
  if (text.length === 0) return null;
  const hint = element("span", "hint");
  hint.id = id;
  hint.textContent = text.join(" — ");
  return hint;
}

function requiredMark(required) {
  if (!required) return [];
  const mark = element("span", "required");
  mark.textContent = "*";
  mark.title = "required";
  return [" ", mark];
}

function element(tag, className) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  return node;
}
