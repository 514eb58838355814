// A server that asks for the password in cleartext (pg_hba `password`) gets nothing: the verify
// login ends the connection instead of answering. A planted server records every message the
// client sends after the startup packet, which a real PostgreSQL cannot show.
import { createServer, type Socket } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { tryLogin } from "../../lib/postgres/index.ts";

const PASSWORD = "never-sent-in-clear-1234";
let port = 0;
const received: string[] = [];
const server = createServer((socket: Socket) => {
  let startup = true;
  socket.on("data", (chunk) => {
    if (startup) {
      startup = false;
      // AuthenticationCleartextPassword: 'R', length 8, code 3.
      const auth = Buffer.alloc(9);
      auth.write("R", 0);
      auth.writeInt32BE(8, 1);
      auth.writeInt32BE(3, 5);
      socket.write(auth);
      return;
    }
    received.push(String.fromCharCode(chunk[0]!), chunk.toString("latin1"));
  });
  socket.on("error", () => {});
});

beforeAll(async () => {
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  port = (server.address() as { port: number }).port;
});
afterAll(() => new Promise<void>((resolve) => server.close(() => resolve())));

describe("verify's login and a server asking for a cleartext password", () => {
  it("is refused, and the password never reaches the server", async () => {
    const result = await tryLogin({ host: "127.0.0.1", port, user: "app", password: PASSWORD, database: "app", ssl: "disable" }, { timeoutMs: 3_000 });
    expect(result).toMatchObject({ status: "error", code: "CLEARTEXT_REFUSED" });
    expect((result as { reason: string }).reason).toMatch(/cleartext; refused/);
    await new Promise((r) => setTimeout(r, 100));
    expect(received.join("")).not.toContain(PASSWORD);
    expect(received.filter((t) => t === "p")).toEqual([]); // no PasswordMessage at all
  });
});
