// Compiled by `npm run check-types` (tsc --noEmit), never run: the declarations must describe
// the package as a TypeScript user calls it, with npm's `eventsource` as the EventSource.
import { EventSource } from "eventsource";
import { LEVELS, PublishError, Publisher, RoomStream, compareIds, roomList } from "../index.js";
import type { Level, LogRecord, StreamState } from "../index.js";
import { RoomStream as StreamOnly } from "roomlogs-client/stream";
import { Publisher as PublisherOnly } from "roomlogs-client/publisher";

const stream: RoomStream = new RoomStream({
  room: "demo",
  token: "t",
  server: "http://localhost:8080",
  history: 10,
  EventSource,
}).start();
stream.addEventListener("log", (e) => {
  const id: string | null = e.detail.id;
  const log: LogRecord = e.detail.log;
  const level: Level = log.level;
  console.log(id, log.message.toUpperCase(), level, log.metadata);
});
stream.addEventListener("state", (e) => {
  const state: StreamState = e.detail.state;
  console.log(state, e.detail.reason.length);
});
stream.addEventListener("unavailable", (e) => console.log(e.detail.retryMs + 1));
stream.addEventListener("connected", (e) => console.log(e.detail.recovered === true));
const many = new RoomStream({
  rooms: ["a", "b"],
  level: "warn",
  agentType: "code",
  lastEventId: stream.lastEventId,
  EventSource,
  on: { refused: (d) => console.log(d.status, d.error, d.detail), log: (d) => console.log(d.roomId) },
}).start();
many.addEventListener("gap", (e) => console.log(e.detail.roomId, e.detail.after));
many.addEventListener("connected", (e) => console.log(e.detail.rooms.length));
many.setRooms(["a", "b", "c"]).close();
const rooms: readonly string[] = many.rooms;
const last: string | null = stream.lastEventId;
stream.close("done");
const order: number | null = compareIds("1-0", "2-0");
const first: "debug" = LEVELS[0];

const publisher = new Publisher({ url: "http://localhost:8080", token: "t", attempts: 3 });
async function publish(): Promise<string[]> {
  const id: string = await publisher.emit("demo", "hi", { agentType: "code", level: "warn" });
  try {
    return [id, ...(await publisher.emitMany("demo", [{ agentType: "a", level: "info", message: "m" }]))];
  } catch (exc) {
    if (exc instanceof PublishError) console.log(exc.status, exc.error, exc.detail, exc.key);
    throw exc;
  }
}
console.log(rooms, roomList("a, b"), last, order, first, publish, StreamOnly, PublisherOnly);
