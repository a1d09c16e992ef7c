// What a Node backend (the NestJS API roomlogs came out of, or any other) keeps once roomlogs
// serves the streams: it publishes logs, mints the tokens and sets the viewer's cookie, and its
// old `GET /api/v1/rooms/:id/logs` hands over to the gateway. Plain node:http so that it runs
// as it is; docs/nodejs.md shows the same three pieces as a NestJS service and controller.
//
//   ROOMLOGS_URL=http://localhost:8080 JWT_SECRET=change-me PORT=3000 node server.js
import http from "node:http";
import jwt from "jsonwebtoken";
import { PublishError, Publisher } from "roomlogs-client";

const ROOM_ID = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;

/** Tokens as the gateway reads them: HS256, `exp` required, `rooms`/`publish` lists of ids. */
export function mintToken(secret, { rooms = [], publish = [], ttlSeconds = 3600, subject } = {}) {
  return jwt.sign({ rooms, publish }, secret, {
    algorithm: "HS256",
    expiresIn: ttlSeconds,
    ...(subject ? { subject } : {}),
  });
}

/** The replacement for the NestJS `RoomsService.emitLog()`. */
export class RoomLogs {
  constructor({ gatewayUrl, secret }) {
    this.secret = secret;
    // One publish token for this backend, renewed before it expires.
    this.publisher = null;
    this.renewAt = 0;
    this.gatewayUrl = gatewayUrl;
  }

  emitLog(room, message, options) {
    if (Date.now() >= this.renewAt) {
      const token = mintToken(this.secret, { publish: "*", ttlSeconds: 3600, subject: "backend" });
      this.publisher = new Publisher({ url: this.gatewayUrl, token });
      this.renewAt = Date.now() + 3000 * 1000; // well before the hour is up
    }
    return this.publisher.emit(room, message, options);
  }

  /** A token for one viewer of one room, to read only. */
  viewerToken(room, user) {
    return mintToken(this.secret, { rooms: [room], ttlSeconds: 900, subject: user });
  }
}

async function readJson(req) {
  const chunks = [];
  for await (const chunk of req) chunks.push(chunk);
  return JSON.parse(Buffer.concat(chunks).toString("utf8") || "{}");
}

function send(res, status, body, headers = {}) {
  res.writeHead(status, { "Content-Type": "application/json", ...headers });
  res.end(JSON.stringify(body));
}

export function createServer({ gatewayUrl, secret, cookieName = "roomlogs_token" }) {
  const logs = new RoomLogs({ gatewayUrl, secret });
  return http.createServer(async (req, res) => {
    const url = new URL(req.url, "http://backend");
    const parts = url.pathname.split("/").filter(Boolean);
    try {
      // POST /jobs/:room/logs {message, agentType, level, metadata}: a job reports progress.
      if (req.method === "POST" && parts.length === 3 && parts[0] === "jobs" && parts[2] === "logs") {
        const { message, ...options } = await readJson(req);
        const id = await logs.emitLog(parts[1], String(message ?? ""), options);
        return send(res, 202, { id });
      }
      // GET /rooms/:room/viewer: the page asks to watch a room; (check the user's rights here)
      // the token goes into an HttpOnly cookie the gateway reads (AUTH_COOKIE), and back as
      // JSON for a client on another origin to pass as ?access_token=.
      if (req.method === "GET" && parts.length === 3 && parts[0] === "rooms" && parts[2] === "viewer") {
        if (!ROOM_ID.test(parts[1])) return send(res, 400, { error: "bad_room_id" });
        const token = logs.viewerToken(parts[1], "user-1");
        const cookie = `${cookieName}=${token}; Path=/api/v1/; HttpOnly; SameSite=Lax; Max-Age=900`;
        return send(res, 200, { token, stream: `/api/v1/rooms/${parts[1]}/logs` }, {
          "Set-Cookie": url.protocol === "https:" ? `${cookie}; Secure` : cookie,
        });
      }
      // The old stream route: the gateway answers it now. Behind one load balancer, route
      // /api/v1/rooms/*/logs there instead; this redirect keeps old clients that still call
      // the backend working (EventSource follows it, with the query and the cookie).
      if (req.method === "GET" && parts.length === 5 && parts[3] && parts[4] === "logs" &&
          parts[0] === "api" && parts[1] === "v1" && parts[2] === "rooms") {
        res.writeHead(307, { Location: new URL(req.url, gatewayUrl).href });
        return res.end();
      }
      return send(res, 404, { error: "not_found" });
    } catch (exc) {
      if (exc instanceof PublishError) {
        return send(res, exc.status && exc.status < 500 ? exc.status : 503, {
          error: exc.error ?? "publish_failed",
          detail: exc.message,
        });
      }
      return send(res, 500, { error: "internal", detail: String(exc) });
    }
  });
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const server = createServer({
    gatewayUrl: process.env.ROOMLOGS_URL ?? "http://localhost:8080",
    secret: process.env.JWT_SECRET ?? "",
  });
  server.listen(Number(process.env.PORT ?? 3000), () =>
    console.log(`backend on http://localhost:${server.address().port}`),
  );
}
