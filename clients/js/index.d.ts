export { LEVELS, RoomStream, compareIds, gatewayBase } from "./stream.js";
export type {
  Level,
  LogRecord,
  RoomStreamEventMap,
  RoomStreamOptions,
  StreamState,
} from "./stream.js";
export { PublishError, Publisher } from "./publisher.js";
export type { EmitOptions, PublisherOptions } from "./publisher.js";
