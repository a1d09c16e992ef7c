// What the tests share: the real gateways they are given, waits with bounded timeouts, and
// small real servers in front of a gateway (a TCP proxy that can cut streams, an HTTP front
// that answers as a failing load balancer would).
//
// Run by tests/system/test_js_client.py, which starts Redis and two gateways and passes:
//   ROOMLOGS_URL          a gateway (RETRY_MS small, so reconnects are quick)
//   ROOMLOGS_LIMITED_URL  a gateway on the same Redis with MAX_CONNECTIONS=1
//   ROOMLOGS_TOKEN        rooms "*", publish "*"
//   ROOMLOGS_OTHER_TOKEN  rooms and publish: the room "other" only
import http from "node:http";
import net from "node:net";
import { once } from "node:events";

export const WAIT_MS = 15000;

export function env(name) {
  const value = process.env[name];
  if (!value) {
    throw new Error(`${name} is not set: run these tests through tests/system/test_js_client.py`);
  }
  return value;
}

let rooms = 0;
export function newRoom() {
  rooms += 1;
  return `js-${process.pid}-${Date.now()}-${rooms}`;
}

/** The first `type` event of `target` whose detail satisfies `accept`, within `ms`. */
export function nextEvent(target, type, accept = () => true, ms = WAIT_MS) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      target.removeEventListener(type, listener);
      reject(new Error(`no ${type} event within ${ms} ms`));
    }, ms);
    function listener(event) {
      if (!accept(event.detail)) return;
      clearTimeout(timer);
      target.removeEventListener(type, listener);
      resolve(event.detail);
    }
    target.addEventListener(type, listener);
  });
}

/** Everything a RoomStream tells, recorded from its start. */
export function record(stream) {
  const seen = { logs: [], states: [], duplicates: [], unavailable: [] };
  stream.addEventListener("log", (e) => seen.logs.push(e.detail));
  stream.addEventListener("state", (e) => seen.states.push(e.detail));
  stream.addEventListener("duplicate", (e) => seen.duplicates.push(e.detail));
  stream.addEventListener("unavailable", (e) => seen.unavailable.push(e.detail));
  return seen;
}

/** Resolves once `seen.logs` holds `n` logs (or more). */
export async function logsReach(stream, seen, n, ms = WAIT_MS) {
  if (seen.logs.length >= n) return;
  await nextEvent(stream, "log", () => seen.logs.length >= n, ms);
}

export async function history(base, room, token) {
  const r = await fetch(`${base}/api/v1/rooms/${room}/logs/history?limit=1000`, {
    headers: { Authorization: `Bearer ${token}` },
    signal: AbortSignal.timeout(WAIT_MS),
  });
  if (r.status !== 200) throw new Error(`history: HTTP ${r.status}`);
  return (await r.json()).logs;
}

async function listen(server) {
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  return `http://127.0.0.1:${server.address().port}`;
}

/**
 * A TCP proxy to `target`: `cut()` destroys every open connection (the gateway's side of a
 * stream going away) and holds new ones unconnected until `release()`; `heads` keeps the first
 * bytes each connection sent (the request line and headers).
 */
export async function startProxy(target) {
  const { hostname, port } = new URL(target);
  const sockets = new Set();
  const held = [];
  const heads = [];
  let holding = false;

  const server = net.createServer((client) => {
    sockets.add(client);
    client.on("close", () => sockets.delete(client));
    client.on("error", () => {});
    const buffered = [];
    let upstream = null;
    let head = "";
    client.on("data", (chunk) => {
      if (!head) {
        head = chunk.toString("latin1");
        heads.push(head);
      }
      if (upstream) upstream.write(chunk);
      else buffered.push(chunk);
    });
    const connect = () => {
      if (client.destroyed) return;
      upstream = net.connect(Number(port), hostname);
      sockets.add(upstream);
      upstream.on("close", () => {
        sockets.delete(upstream);
        client.destroy();
      });
      upstream.on("error", () => client.destroy());
      client.on("close", () => upstream.destroy());
      for (const chunk of buffered.splice(0)) upstream.write(chunk);
      upstream.pipe(client);
    };
    if (holding) held.push(connect);
    else connect();
  });
  const url = await listen(server);
  return {
    url,
    heads,
    /** Closes every connection, and holds the next ones until `release()`. */
    async cut() {
      holding = true;
      for (const socket of sockets) socket.destroy();
    },
    release() {
      holding = false;
      for (const go of held.splice(0)) go();
    },
    async close() {
      for (const socket of sockets) socket.destroy();
      server.close();
      await once(server, "close");
    },
  };
}

/**
 * An HTTP front for the publisher: each POST is answered by the next of `plan`'s steps, then
 * by forwarding to `target`. Steps: a status (answered with a JSON error, not forwarded),
 * "drop" (the socket destroyed before any answer), or "forward-then-502" (forwarded, the
 * gateway's answer thrown away and 502 answered: the outcome lost on the way back).
 * `requests` records each POST's Idempotency-Key and what it was answered.
 */
export async function startFront(target, plan = []) {
  const steps = [...plan];
  const requests = [];
  const server = http.createServer(async (req, res) => {
    const chunks = [];
    for await (const chunk of req) chunks.push(chunk);
    const body = Buffer.concat(chunks);
    const step = steps.length ? steps.shift() : "forward";
    const entry = { key: req.headers["idempotency-key"], step, status: null };
    requests.push(entry);
    if (step === "drop") {
      req.socket.destroy();
      return;
    }
    if (typeof step === "number") {
      entry.status = step;
      res.writeHead(step, { "Content-Type": "application/json" });
      res.end(JSON.stringify({ error: "test_front", detail: `the front answered ${step}` }));
      return;
    }
    const headers = {};
    for (const name of ["authorization", "content-type", "idempotency-key"]) {
      if (req.headers[name]) headers[name] = req.headers[name];
    }
    const upstream = await fetch(target + req.url, {
      method: req.method,
      headers,
      body,
      signal: AbortSignal.timeout(WAIT_MS),
    });
    const text = await upstream.text();
    entry.upstream = upstream.status;
    entry.upstreamBody = text;
    if (step === "forward-then-502") {
      entry.status = 502;
      res.writeHead(502, { "Content-Type": "text/html" });
      res.end("<html><body>502 Bad Gateway</body></html>");
      return;
    }
    entry.status = upstream.status;
    res.writeHead(upstream.status, { "Content-Type": "application/json" });
    res.end(text);
  });
  const url = await listen(server);
  return {
    url,
    requests,
    async close() {
      server.closeAllConnections?.();
      server.close();
      await once(server, "close");
    },
  };
}
