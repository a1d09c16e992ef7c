// ROOMLOGS_URL=http://localhost:8080 JWT_SECRET=change-me PORT=3000 node dist/main.js
import { createApp } from "./app.js";

const app = await createApp();
await app.listen(Number(process.env.PORT ?? 3000));
console.log(`backend on ${await app.getUrl()}`);
