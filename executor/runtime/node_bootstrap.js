// Runs inside a Node.js handler process; loads nothing of computebus.
// argv: request fd, reply fd; or --check DIR (start, make sure DIR can be entered, exit: the
// worker's start-up check). The first request is the process's assignment: its workspace, the
// handler's file and export, and the function's env_vars; every later one is an invocation (a
// spare process waits for the first with node started and this file loaded).
// Frames on both pipes are a 4-byte big-endian length, an 8-byte nonce and a JSON document; a
// reply carries its request's nonce.
'use strict';
const fs = require('fs');
const net = require('net');
const path = require('path');

if (process.argv[2] === '--check') {
  try {  // entering is all a handler needs of the workspaces' root (its own it reads)
    process.chdir(process.argv[3]);
  } catch (err) {
    console.error(`cannot enter ${process.argv[3]}: ${err.code}`);
    process.exit(3);  // the directory cannot be entered by this uid
  }
  process.exit(0);
}
const [reqFd, replyFd] = process.argv.slice(2);
const HEADER = 12;
let workspace = null;
let relFile = null;
let exportName = null;

// The first frame: the function's env_vars (over the pipe, so nothing that ran as root before
// this process saw them) and the workspace to enter.
function takeAssignment(nonce, message) {
  const assignment = message.assign;
  for (const item of assignment.env) {
    const eq = item.indexOf('=');
    process.env[item.slice(0, eq)] = item.slice(eq + 1);
  }
  ({ workspace, file: relFile, export: exportName } = assignment);
  process.chdir(workspace);
  writeReply(nonce, '{"ok":true,"result":null}');
}

let handler = null;
let pending = Buffer.alloc(0);
let busy = false;
let current = null;

function writeReply(nonce, text) {
  const body = Buffer.from(text);
  const header = Buffer.alloc(HEADER);
  header.writeUInt32BE(body.length, 0);
  nonce.copy(header, 4);
  const data = Buffer.concat([header, body]);
  let off = 0;
  while (off < data.length) {
    try {
      off += fs.writeSync(Number(replyFd), data, off, data.length - off);
    } catch (err) {
      if (err.code !== 'EAGAIN') throw err;
    }
  }
}

function error(code, type, message) {
  return JSON.stringify({ ok: false, error: { code, type: String(type), message: String(message) } });
}

// Answers ``job`` unless it was already answered (a late result after an uncaught exception
// answered it must not become the answer to the next request).
function finish(job, reply) {
  if (job === null || current !== job) return;
  current = null;
  afterStdio(() => {
    writeReply(job.nonce, reply);
    busy = false;
    setImmediate(pump);
  });
}

// Node queues console output when the log pipe is full; the reply waits until what was printed
// before it has reached the pipe, so the worker reads an invocation's logs before its reply.
function afterStdio(then) {
  let waiting = 0;
  const done = () => { if (--waiting === 0) then(); };
  for (const stream of [process.stdout, process.stderr]) {
    if (stream.writableLength > 0) {
      waiting += 1;
      stream.write('', done);
    }
  }
  if (waiting === 0) then();
}

function load() {
  const file = path.join(workspace, relFile);
  const mod = require(file);
  const fn = mod && mod[exportName];
  if (typeof fn !== 'function') {
    // Forget the module so the next call loads it again, like Python does: every invocation's
    // record then shows what the module printed while loading.
    delete require.cache[require.resolve(file)];
    const err = new Error(`${relFile} has no function export '${exportName}'`);
    err.notFound = true;
    throw err;
  }
  return fn;
}

async function run(job) {
  const request = job.message;
  if (handler === null) {
    // A failed load is answered and retried on the next request (require does not cache a
    // module that threw), so every call gets the same answer from a live process.
    try {
      handler = load();
    } catch (err) {
      if (err && err.notFound) {
        finish(job, error('handler_not_found', 'HandlerNotFound', err.message));
      } else {
        console.error(err && err.stack ? err.stack : err);
        finish(job, error('function_error', (err && err.name) || typeof err,
          err && err.message !== undefined ? err.message : err));
      }
      return;
    }
  }
  if (request.probe) {  // a load check: the handler loaded, do not call it
    finish(job, '{"ok":true,"result":null}');
    return;
  }
  let result;
  try {
    result = await handler(request.event, request.context);
  } catch (err) {
    console.error(err && err.stack ? err.stack : err);
    finish(job, error('function_error', (err && err.name) || typeof err,
      err && err.message !== undefined ? err.message : err));
    return;
  }
  if (result === undefined) result = null;
  let encoded;
  try {
    encoded = JSON.stringify(result);
  } catch (err) {
    finish(job, error('invalid_output', err.name, `result is not JSON: ${err.message}`));
    return;
  }
  if (encoded === undefined) {
    finish(job, error('invalid_output', 'TypeError', `result is not JSON: a ${typeof result}`));
    return;
  }
  finish(job, '{"ok":true,"result":' + encoded + '}');
}

function pump() {
  if (busy || pending.length < HEADER) return;
  const size = pending.readUInt32BE(0);
  if (pending.length < HEADER + size) return;
  const nonce = Buffer.from(pending.subarray(4, HEADER));
  const body = pending.subarray(HEADER, HEADER + size);
  pending = pending.subarray(HEADER + size);
  const message = JSON.parse(body.toString('utf8'));
  if (workspace === null) {
    takeAssignment(nonce, message);
    setImmediate(pump);
    return;
  }
  busy = true;
  current = { nonce, message };
  run(current);
}

process.on('uncaughtException', (err) => {
  console.error(err && err.stack ? err.stack : err);
  finish(current, error('function_error', (err && err.name) || 'Error', err && err.message));
});
process.on('unhandledRejection', (err) => {
  console.error('unhandled rejection:', err && err.stack ? err.stack : err);
});

// A socket over the pipe, not fs.createReadStream: libuv polls a pipe handle directly, while a
// read stream blocks a threadpool thread per read and costs a thread hop per request.
const input = new net.Socket({ fd: Number(reqFd), readable: true, writable: false });
input.on('data', (chunk) => {
  pending = pending.length ? Buffer.concat([pending, chunk]) : chunk;
  pump();
});
input.on('end', () => process.exit(0));
