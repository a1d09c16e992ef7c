// roomlogs-client: RoomStream (browsers and Node) and Publisher (Node). Browsers that load
// files as they are may import "./stream.js" alone; the publisher is for servers.
export { LEVELS, RoomStream, compareIds, gatewayBase, roomList } from "./stream.js";
export { PublishError, Publisher } from "./publisher.js";
