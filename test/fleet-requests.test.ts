/**
 * The fleet client's request table on its own, with a connection that only records what is
 * published: replies are delivered by hand.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { headers, type Msg, type NatsConnection } from '@nats-io/transport-node';
import { ClientState } from '../src/fleet/client-state.js';
import { FleetCall, type Route } from '../src/fleet/call.js';
import type { HostEntry, HostTable } from '../src/fleet/host-table.js';
import { RequestTable } from '../src/fleet/requests.js';
import { fleetSubjects } from '../src/fleet/subjects.js';
import { H } from '../src/fleet/wire.js';

function table(): { requests: RequestTable; sent: { subject: string; reply: string }[]; route: Route } {
  const sent: { subject: string; reply: string }[] = [];
  const nc = {
    publish: (subject: string, _data: Uint8Array, o: { reply?: string }) => sent.push({ subject, reply: o?.reply ?? '' }),
    isClosed: () => false,
  } as unknown as NatsConnection;
  const host = { id: 'h1', inFlight: 0, lost: new Set() } as unknown as HostEntry;
  const hosts = { get: () => host } as unknown as HostTable;
  const counts = { resent: 0, settledTwice: 0 };
  const requests = new RequestTable(nc, fleetSubjects('t'), hosts, new ClientState(), counts, 5_000);
  return { requests, sent, route: { host, ticket: 0, epoch: 0, gen: '', fence: 0 } };
}

let ids = 0;
function call(requests: RequestTable): FleetCall {
  const id = ++ids;
  const info = { idempotent: true, kind: 'sync', stream: false, timeout: null, maxConcurrency: null, session: 'rw' } as const;
  return new FleetCall({ id, command: 'echo', info, args: null, argsJson: 'null', sessionId: null, idempotent: true, timeoutMs: 60_000, signal: undefined, detailed: false }, requests.wireId(id), new Uint8Array());
}

function okReply(subject: string, value: unknown): Msg {
  const h = headers();
  h.set(H.status, 'ok');
  return { subject, headers: h, data: new TextEncoder().encode(JSON.stringify(value)) } as unknown as Msg;
}

describe('the request table', () => {
  it('never gives a call the reply subject of a stream still open (a long stream, then a thousand calls)', async () => {
    const { requests, sent, route } = table();
    const streamMsgs: Msg[] = [];
    const stream = requests.streamTransport.inbox((m) => streamMsgs.push(m));
    const calls: Promise<unknown>[] = [];
    try {
      for (let i = 0; i < 1_500; i++) calls.push(requests.send(call(requests), 1, 60_000, route).catch((e: unknown) => e));
      const replies = sent.map((s) => s.reply);
      assert.equal(new Set(replies).size, replies.length);
      assert.ok(!replies.includes(stream.subject), 'a call got the open stream reply subject');
      for (const [i, r] of replies.entries()) requests.onReply(okReply(r, i));
      assert.deepEqual(await Promise.all(calls), replies.map((_, i) => i));
      assert.equal(streamMsgs.length, 0);
    } finally {
      requests.failAll();
      stream.close();
    }
  });
});
