// Finished invocations as they happen: GET .../invocations/live (server-sent events) read with
// fetch, since EventSource cannot send the Authorization header. If the stream is refused or
// drops, it is tried again after the server's retry time; meanwhile the caller polls.
import { authHeaders, url } from "./api.js";

export function liveRecords(path, { onRecord, onState }) {
  const abort = new AbortController();
  let retryMs = 3000;

  async function once() {
    const response = await fetch(url(path), { headers: { Accept: "text/event-stream", ...authHeaders() }, signal: abort.signal });
    if (!response.ok || !response.body) throw new Error(`live stream refused (HTTP ${response.status})`);
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buffer += value;
      let end;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        handle(buffer.slice(0, end));
        buffer = buffer.slice(end + 2);
      }
    }
  }

  function handle(block) {
    const data = [];
    let event = "message";
    for (const line of block.split("\n")) {
      if (line === ": ready") onState("live");
      else if (line.startsWith("retry:")) retryMs = Number(line.slice(6)) || retryMs;
      else if (line.startsWith("event:")) event = line.slice(6).trim();
      else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
    }
    if (event === "record" && data.length) onRecord(JSON.parse(data.join("\n")));
  }

  (async () => {
    while (!abort.signal.aborted) {
      try {
        await once();
      } catch {
        // refused or dropped: poll until the next try
      }
      if (abort.signal.aborted) return;
      onState("polling");
      await new Promise((resolve) => setTimeout(resolve, retryMs));
    }
  })();
  return () => abort.abort();
}
