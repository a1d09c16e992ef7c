// The example backend against the real gateway (started by tests/system/test_js_client.py with
// ROOMLOGS_URL and the gateway's JWT_SECRET): its logs reach a RoomStream, its tokens and
// cookie are the gateway's, and its old stream route hands over to the gateway.
import assert from "node:assert/strict";
import { once } from "node:events";
import { after, before, test } from "node:test";
import { EventSource } from "eventsource";
import jwt from "jsonwebtoken";
import { RoomStream } from "roomlogs-client";

import { createServer } from "../server.js";

const GATEWAY = process.env.ROOMLOGS_URL;
const SECRET = process.env.JWT_SECRET;
const WAIT_MS = 15000;
let backend;
let server;

before(async () => {
  assert.ok(GATEWAY && SECRET, "run through tests/system/test_js_client.py");
  server = createServer({ gatewayUrl: GATEWAY, secret: SECRET });
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  backend = `http://127.0.0.1:${server.address().port}`;
});
after(() => {
  server.closeAllConnections?.();
  server.close();
});

function room() {
  return `example-${process.pid}-${Date.now()}-${Math.random().toString(36).slice(2, 8)}`;
}

function logsOf(stream, n) {
  const logs = [];
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`not ${n} logs in ${WAIT_MS} ms`)), WAIT_MS);
    stream.addEventListener("log", (e) => {
      logs.push(e.detail);
      if (logs.length === n) {
        clearTimeout(timer);
        resolve(logs);
      }
    });
    stream.addEventListener("state", (e) => {
      if (e.detail.state === "closed") reject(new Error(e.detail.reason));
    });
  });
}

async function viewer(r) {
  const answer = await fetch(`${backend}/rooms/${r}/viewer`, { signal: AbortSignal.timeout(WAIT_MS) });
  assert.equal(answer.status, 200);
  return { ...(await answer.json()), cookie: answer.headers.get("set-cookie") };
}

async function publish(r, body) {
  const answer = await fetch(`${backend}/jobs/${r}/logs`, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(body),
    signal: AbortSignal.timeout(WAIT_MS),
  });
  return { status: answer.status, body: await answer.json() };
}

test("the backend's logs reach a viewer holding the token it minted", async () => {
  const r = room();
  const { token, stream: path } = await viewer(r);
  assert.equal(path, `/api/v1/rooms/${r}/logs`);
  const claims = jwt.verify(token, SECRET, { algorithms: ["HS256"] });
  assert.deepEqual(claims.rooms, [r]);
  assert.deepEqual(claims.publish, []); // reading only
  assert.ok(claims.exp > Date.now() / 1000);

  const stream = new RoomStream({ room: r, token, server: GATEWAY, EventSource, history: 10 });
  const received = logsOf(stream, 2);
  stream.start();
  const first = await publish(r, { message: "story drafted", agentType: "story", level: "success" });
  const second = await publish(r, { message: "assets", agentType: "asset", metadata: { n: 3 } });
  assert.equal(first.status, 202);
  const logs = await received;
  stream.close();
  assert.deepEqual(
    logs.map((l) => [l.id, l.log.message, l.log.agentType, l.log.level]),
    [
      [first.body.id, "story drafted", "story", "success"],
      [second.body.id, "assets", "asset", "info"],
    ],
  );
  assert.deepEqual(logs[1].log.metadata, { n: 3 });
});

test("the viewer's cookie is the one the gateway reads", async () => {
  const r = room();
  const { token, cookie } = await viewer(r);
  const [pair, ...attributes] = cookie.split(/;\s*/);
  assert.equal(pair, `roomlogs_token=${token}`);
  for (const attribute of ["Path=/api/v1/", "HttpOnly", "SameSite=Lax", "Max-Age=900"]) {
    assert.ok(attributes.includes(attribute), cookie);
  }
  const abort = new AbortController();
  const answer = await fetch(`${GATEWAY}/api/v1/rooms/${r}/logs`, {
    headers: { Cookie: cookie.split(";")[0] },
    signal: abort.signal,
  });
  assert.equal(answer.status, 200);
  assert.match(answer.headers.get("content-type"), /^text\/event-stream/);
  abort.abort();
  // The token is for that room only.
  const other = await fetch(`${GATEWAY}/api/v1/rooms/${room()}/logs`, {
    headers: { Cookie: cookie.split(";")[0] },
    signal: AbortSignal.timeout(WAIT_MS),
  });
  assert.equal(other.status, 403);
});

test("the old stream route on the backend hands over to the gateway", async () => {
  const r = room();
  const { token } = await viewer(r);
  const redirect = await fetch(`${backend}/api/v1/rooms/${r}/logs?access_token=${token}&history=5`, {
    redirect: "manual",
    signal: AbortSignal.timeout(WAIT_MS),
  });
  assert.equal(redirect.status, 307);
  assert.equal(redirect.headers.get("location"), `${GATEWAY}/api/v1/rooms/${r}/logs?access_token=${token}&history=5`);

  // An EventSource pointed at the backend follows it and streams from the gateway.
  const published = await publish(r, { message: "before the viewer came", agentType: "code" });
  const stream = new RoomStream({ room: r, token, server: backend, EventSource, history: 5 });
  const received = logsOf(stream, 1);
  stream.start();
  const [log] = await received;
  stream.close();
  assert.deepEqual([log.id, log.log.message], [published.body.id, "before the viewer came"]);
});

test("a refused publish is told to the backend's caller", async () => {
  const { status, body } = await publish(room(), { message: "x", level: "loud" });
  assert.equal(status, 400);
  assert.equal(body.error, "invalid_log");
  assert.match(body.detail, /level/);
});
