// The README's "Walk-through with curl", through the TypeScript client that
// openapi-generator (typescript-fetch) made from docs/openapi.json, and
// nothing else: no hand-written fetch, no URL built here.
//
//   node walkthrough.js http://127.0.0.1:PORT
//
// scripts/openapi-clients.sh copies this file next to the generated client
// (./client), compiles both with tsc --strict and runs it against a fresh
// simmer. Each step checks the status, the body as the generated models
// read it, and that the model kept every field the server sent (a field the
// model drops is one the spec does not describe). Exits 1 on the first
// failure, with what was expected and what came back.

import {
    AuthApi,
    ChatApi,
    Configuration,
    ErrorCode,
    Middleware,
    ProblemFromJSON,
    ProblemToJSON,
    RecipesApi,
    ResponseError,
    Role,
    SessionsApi,
    SessionState,
    TimerState,
    instanceOfErrorCode,
    AuthResponseToJSON,
    ChatMessageToJSON,
    GuestTokenToJSON,
    MessagePageToJSON,
    RecipeToJSON,
    SessionPageToJSON,
    SessionToJSON,
    TimerViewToJSON,
} from "./client";

// Node's globals, without @types/node (lib is dom + es2022).
declare const process: { argv: string[]; exit(code: number): never };

const base = process.argv[2];
if (!base) {
    console.error("usage: node walkthrough.js http://127.0.0.1:PORT");
    process.exit(2);
}

class Failure extends Error {}

function check(cond: unknown, what: string, got?: unknown): asserts cond {
    if (!cond) {
        throw new Failure(got === undefined ? what : `${what} (got ${JSON.stringify(got)})`);
    }
}

// The last response any client saw, read from a clone by a middleware of the
// generated runtime (the client itself reads the original).
interface Seen {
    method: string;
    url: string;
    status: number;
    contentType: string;
    body: string;
}
let last: Seen | undefined;
const recorder: Middleware = {
    async post(context) {
        last = {
            method: String(context.init.method ?? "GET"),
            url: context.url,
            status: context.response.status,
            contentType: context.response.headers.get("content-type") ?? "",
            body: await context.response.text(),
        };
        return undefined;
    },
};

function config(accessToken?: string): Configuration {
    return new Configuration({ basePath: base, accessToken, middleware: [recorder] });
}

// JSON as the server sent it vs. JSON as the generated model writes back
// what it read: a key the model lost is missing from the spec; null and
// absent are the same to the model; timestamps compare as instants.
const ISO = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$/;
function differences(sent: unknown, kept: unknown, path: string, out: string[]): void {
    if (sent === null || sent === undefined) {
        if (kept !== null && kept !== undefined) out.push(`${path}: server sent null, model has ${JSON.stringify(kept)}`);
        return;
    }
    if (Array.isArray(sent)) {
        if (!Array.isArray(kept) || kept.length !== sent.length) {
            out.push(`${path}: server sent an array of ${sent.length}, model has ${JSON.stringify(kept)}`);
            return;
        }
        sent.forEach((v, i) => differences(v, kept[i], `${path}[${i}]`, out));
        return;
    }
    if (typeof sent === "object") {
        if (typeof kept !== "object" || kept === null) {
            out.push(`${path}: server sent an object, model has ${JSON.stringify(kept)}`);
            return;
        }
        const s = sent as Record<string, unknown>;
        const k = kept as Record<string, unknown>;
        for (const key of Object.keys(s)) {
            if (s[key] !== null && !(key in k && k[key] !== undefined)) {
                out.push(`${path}.${key}: sent by the server, not in the generated model`);
            } else {
                differences(s[key], k[key], `${path}.${key}`, out);
            }
        }
        for (const key of Object.keys(k)) {
            if (!(key in s) && k[key] !== undefined && k[key] !== null) {
                out.push(`${path}.${key}: in the model, not sent by the server`);
            }
        }
        return;
    }
    if (sent === kept) return;
    if (typeof sent === "string" && typeof kept === "string" && ISO.test(sent) && ISO.test(kept)
        && Math.abs(Date.parse(sent) - Date.parse(kept)) < 1) {
        return;
    }
    out.push(`${path}: server sent ${JSON.stringify(sent)}, model has ${JSON.stringify(kept)}`);
}

function expectResponse<T>(status: number, value: T, toJSON: (v: T) => unknown): T {
    check(last !== undefined, "no response was seen");
    check(last.status === status, `${last.method} ${last.url}: expected HTTP ${status}`, last.status);
    check(/^application\/json\b/.test(last.contentType),
        `${last.method} ${last.url}: expected application/json`, last.contentType);
    const diffs: string[] = [];
    differences(JSON.parse(last.body), JSON.parse(JSON.stringify(toJSON(value))), "$", diffs);
    check(diffs.length === 0, `${last.method} ${last.url}: the generated model does not round-trip the body:\n  `
        + diffs.join("\n  "));
    return value;
}

let passed = 0;
async function step<T>(name: string, body: () => Promise<T>): Promise<T> {
    last = undefined;
    try {
        const result = await body();
        passed += 1;
        console.log(`ok ${passed} - ${name}`);
        return result;
    } catch (e) {
        const seen = last as Seen | undefined; // set by the middleware meanwhile
        console.error(`not ok ${passed + 1} - ${name}`);
        if (e instanceof Failure) {
            console.error(`  ${e.message}`);
        } else if (e instanceof ResponseError) {
            console.error(`  unexpected HTTP ${e.response.status} from ${e.response.url}: ${seen?.body ?? ""}`);
        } else {
            console.error(`  ${e instanceof Error ? e.stack ?? e.message : String(e)}`);
        }
        if (seen) console.error(`  last response: ${seen.method} ${seen.url} -> ${seen.status} ${seen.body.slice(0, 500)}`);
        console.error(`${passed} passed, 1 failed`);
        process.exit(1);
    }
}

async function main(): Promise<void> {
    const anon = config();
    const auth = new AuthApi(anon);

    const me = await step("register anna (201, tokens)", async () => {
        const res = await auth.registerRaw({
            registerRequest: { username: "anna", password: "correct horse battery", displayName: "Anna" },
        });
        const r = expectResponse(201, await res.value(), AuthResponseToJSON);
        check(res.raw.status === 201, "register: status", res.raw.status);
        check(r.accessToken.length > 0, "register: access_token is empty");
        check(r.tokenType === "Bearer", "register: token_type", r.tokenType);
        check(r.expiresIn > 0, "register: expires_in", r.expiresIn);
        check(r.user.username === "anna" && r.user.displayName === "Anna", "register: user", r.user);
        check(r.user.createdAt instanceof Date && !isNaN(r.user.createdAt.getTime()), "register: created_at", r.user.createdAt);
        return r;
    });

    const host = config(me.accessToken);
    const recipes = new RecipesApi(host);
    const sessions = new SessionsApi(host);
    const chat = new ChatApi(host);

    const recipe = await step("create a recipe with 2 steps (201, steps indexed)", async () => {
        const r = expectResponse(201, await recipes.createRecipe({
            recipeInput: {
                title: "Tomato soup",
                servings: 2,
                steps: [
                    { text: "Chop the onions", durationS: 120, label: "Chop" },
                    { text: "Simmer everything", durationS: 900, label: "Simmer" },
                ],
            },
        }), RecipeToJSON);
        check(r.title === "Tomato soup" && r.servings === 2, "recipe: title/servings", r);
        check(r.owner.id === me.user.id, "recipe: owner is anna", r.owner);
        check(r.steps.length === 2, "recipe: 2 steps", r.steps);
        check(r.steps[0].index === 0 && r.steps[0].durationS === 120 && r.steps[0].label === "Chop",
            "recipe: step 0", r.steps[0]);
        check(r.steps[1].index === 1 && r.steps[1].durationS === 900 && r.steps[1].label === "Simmer",
            "recipe: step 1", r.steps[1]);
        return r;
    });

    const session = await step("create a session (201, scheduled, anna hosts)", async () => {
        const s = expectResponse(201, await sessions.createSession({
            createSessionRequest: { recipeId: recipe.id, title: "Soup night, live" },
        }), SessionToJSON);
        check(s.state === SessionState.Scheduled, "session: state", s.state);
        check(s.title === "Soup night, live", "session: title", s.title);
        check(s.host.id === me.user.id, "session: host", s.host);
        check(s.recipe.id === recipe.id && s.recipe.steps.length === 2, "session: recipe copy", s.recipe);
        check(s.timer.state === TimerState.Idle && s.timer.stepCount === 2, "session: timer", s.timer);
        check(s.allowGuests === true, "session: allow_guests defaults to true", s.allowGuests);
        return s;
    });

    await step("start it (200, live)", async () => {
        const s = expectResponse(200, await sessions.startSession({ id: session.id }), SessionToJSON);
        check(s.id === session.id, "start: id", s.id);
        check(s.state === SessionState.Live, "start: state", s.state);
        check(s.startedAt instanceof Date, "start: started_at", s.startedAt);
    });

    await step("list live sessions (it is there, live, timer idle)", async () => {
        const page = expectResponse(200, await new SessionsApi(anon).listSessions({ state: SessionState.Live }),
            SessionPageToJSON);
        check(page.items.every((s) => s.state === SessionState.Live), "list: every item live",
            page.items.map((s) => s.state));
        const mine = page.items.find((s) => s.id === session.id);
        check(mine !== undefined, "list: our session is listed", page.items.map((s) => s.id));
        check(typeof mine.viewerCount === "number" && mine.viewerCount >= 0, "list: viewer_count", mine.viewerCount);
        check(mine.timer.state === TimerState.Idle, "list: timer state", mine.timer.state);
    });

    const guest = await step("a guest token for the session (201, no account)", async () => {
        const g = expectResponse(201, await new SessionsApi(anon).createGuestToken({
            id: session.id,
            guestTokenRequest: { displayName: "Hungry viewer" },
        }), GuestTokenToJSON);
        check(g.sessionId === session.id, "guest: session_id", g.sessionId);
        check(g.tokenType === "Bearer" && g.accessToken.length > 0, "guest: token", g);
        check(g.expiresIn > 0, "guest: expires_in", g.expiresIn);
        return g;
    });
    const guestChat = new ChatApi(config(guest.accessToken));

    const hostMsg = await step("the host posts a chat message (201, client_msg_id kept)", async () => {
        const m = expectResponse(201, await chat.postSessionMessage({
            id: session.id,
            postMessage: { text: "Welcome to soup night!", clientMsgId: "walkthrough-host-1" },
        }), ChatMessageToJSON);
        check(m.sessionId === session.id, "host message: session_id", m.sessionId);
        check(m.seq >= 1, "host message: seq", m.seq);
        check(m.text === "Welcome to soup night!", "host message: text", m.text);
        check(m.clientMsgId === "walkthrough-host-1", "host message: client_msg_id", m.clientMsgId);
        check(m.author.id === me.user.id && m.author.role === Role.Host && m.author.name === "Anna",
            "host message: author", m.author);
        return m;
    });

    const guestMsg = await step("the guest posts a chat message (201, the next seq)", async () => {
        const m = expectResponse(201, await guestChat.postSessionMessage({
            id: session.id,
            postMessage: { text: "Smells great", clientMsgId: "walkthrough-guest-1" },
        }), ChatMessageToJSON);
        check(m.seq === hostMsg.seq + 1, "guest message: seq follows the host's", m.seq);
        check(m.text === "Smells great", "guest message: text", m.text);
        check(m.clientMsgId === "walkthrough-guest-1", "guest message: client_msg_id", m.clientMsgId);
        check(m.author.id === guest.guestId && m.author.role === Role.Guest && m.author.name === "Hungry viewer",
            "guest message: author", m.author);
        return m;
    });

    await step("the host resends its client_msg_id (201, the stored message, nothing new)", async () => {
        const m = expectResponse(201, await chat.postSessionMessage({
            id: session.id,
            postMessage: { text: "Welcome again?", clientMsgId: "walkthrough-host-1" },
        }), ChatMessageToJSON);
        check(m.seq === hostMsg.seq && m.text === hostMsg.text, "resend: the first stored message", m);
    });

    await step("list messages (both, newest first, nothing else)", async () => {
        const page = expectResponse(200, await chat.listSessionMessages({ id: session.id }), MessagePageToJSON);
        const seen = page.items.map((m) => [m.seq, m.author.role, m.text]);
        check(page.items.length === 2, "messages: exactly 2", seen);
        check(page.items[0].seq === guestMsg.seq && page.items[0].text === guestMsg.text
            && page.items[0].author.role === Role.Guest, "messages: the guest's first (newest)", seen);
        check(page.items[1].seq === hostMsg.seq && page.items[1].text === hostMsg.text
            && page.items[1].author.role === Role.Host, "messages: then the host's", seen);
        check(page.nextBeforeSeq === undefined || page.nextBeforeSeq === null, "messages: no older page",
            page.nextBeforeSeq);
    });

    await step("timer start (running step 0 with a deadline)", async () => {
        const t = expectResponse(200, await sessions.controlSessionTimer({
            id: session.id, timerRequest: { action: "start" },
        }), TimerViewToJSON);
        check(t.state === TimerState.Running, "start: state", t.state);
        check(t.stepIndex === 0 && t.stepCount === 2, "start: step 0 of 2", [t.stepIndex, t.stepCount]);
        check(t.step?.label === "Chop" && t.step?.durationS === 120, "start: the step", t.step);
        check(typeof t.deadlineMs === "number" && t.deadlineMs > t.serverTimeMs, "start: deadline_ms",
            [t.deadlineMs, t.serverTimeMs]);
        check(typeof t.remainingMs === "number" && t.remainingMs > 0 && t.remainingMs <= 120_000,
            "start: remaining_ms", t.remainingMs);
    });

    await step("timer next (running step 1)", async () => {
        const t = expectResponse(200, await sessions.controlSessionTimer({
            id: session.id, timerRequest: { action: "next" },
        }), TimerViewToJSON);
        check(t.stepIndex === 1, "next: step_index", t.stepIndex);
        check(t.state === TimerState.Running, "next: state", t.state);
        check(t.step?.label === "Simmer" && t.step?.durationS === 900, "next: the step", t.step);
        check(typeof t.remainingMs === "number" && t.remainingMs > 0 && t.remainingMs <= 900_000,
            "next: remaining_ms", t.remainingMs);
    });

    await step("read the timer (step 1, running)", async () => {
        const t = expectResponse(200, await new SessionsApi(anon).getSessionTimer({ id: session.id }),
            TimerViewToJSON);
        check(t.stepIndex === 1 && t.state === TimerState.Running, "timer: step 1 running", [t.stepIndex, t.state]);
        check(typeof t.deadlineMs === "number" && t.deadlineMs > t.serverTimeMs, "timer: deadline_ms",
            [t.deadlineMs, t.serverTimeMs]);
    });

    await step("end the session (200, ended)", async () => {
        const s = expectResponse(200, await sessions.endSession({ id: session.id }), SessionToJSON);
        check(s.state === SessionState.Ended, "end: state", s.state);
        check(s.endedAt instanceof Date, "end: ended_at", s.endedAt);
    });

    await step("end it again (409 problem+json with a code)", async () => {
        let error: unknown;
        try {
            await sessions.endSession({ id: session.id });
        } catch (e) {
            error = e;
        }
        check(error instanceof ResponseError, "end again: the client should throw a ResponseError", String(error));
        check(error.response.status === 409, "end again: status", error.response.status);
        check(last !== undefined && /^application\/problem\+json\b/.test(last.contentType),
            "end again: content type", last?.contentType);
        const body: unknown = await error.response.json();
        const problem = ProblemFromJSON(body);
        const diffs: string[] = [];
        differences(body, JSON.parse(JSON.stringify(ProblemToJSON(problem))), "$", diffs);
        check(diffs.length === 0, "end again: the Problem model does not round-trip:\n  " + diffs.join("\n  "));
        check(problem.status === 409, "end again: problem.status", problem.status);
        check(instanceOfErrorCode(problem.code), "end again: code is one of ErrorCode", problem.code);
        check(problem.code === ErrorCode.Conflict, "end again: code", problem.code);
        check(problem.type === `urn:simmer:problem:${problem.code}`, "end again: type", problem.type);
        check(problem.title.length > 0 && problem.detail.length > 0, "end again: title and detail", problem);
    });

    console.log(`${passed} passed, 0 failed`);
}

main().catch((e: unknown) => {
    console.error(e instanceof Error ? e.stack ?? e.message : String(e));
    process.exit(1);
});
