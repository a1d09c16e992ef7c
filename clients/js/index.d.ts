export { LEVELS, RoomStream, compareIds, gatewayBase, roomList } from "./stream.js";
export type {
  Level,
  LogRecord,
  RoomStreamCallbacks,
  RoomStreamEventMap,
  RoomStreamOptions,
  StreamState,
} from "./stream.js";
export { PublishError, Publisher } from "./publisher.js";
export type { EmitOptions, PublisherOptions } from "./publisher.js";
