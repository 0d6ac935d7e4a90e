// Dead letters and redrive, as pure message transforms the wiring applies between a
// topic's partitions and its dead-letter topic. The dead-letter topic has as many
// partitions as its topic and partition p's dead letters go to its partition p, so a
// dead-letter partition holds the dead letters of one source partition, in order.
//
// deadLetterMessage(): an outbox letter's source message with its key, value and headers, plus
//   dsync-dlq-* headers naming the group, the source partition and offset, the
//   delivery count and the reason.
// redriveAppend(): dead-letter messages back to their source partition as ONE append
//   whose messages are visible only to the group that gave up on them (onlyGroup),
//   with the dsync-dlq-* headers removed. Its producer id names the dead-letter
//   partition and its sequence numbers are the dead-letter offsets + 1, so a retried
//   or repeated redrive of the same dead letters is applied once (producer dedup).

import { assert } from '../assert.js';
import { consumerGroup, producerId } from '../ids.js';
import type { ConsumerGroup, PartitionId } from '../ids.js';
import type { Append, DeadLetter, Header, Message, StoredMessage } from './commands.js';

export const dlqHeaderPrefix = 'dsync-dlq-';
const encoder = new TextEncoder();
const decoder = new TextDecoder('utf-8', { ignoreBOM: true });
const text = (s: string): Uint8Array => encoder.encode(s);

/** The dead-letter topic's copy of `m` (the source message at letter.offset). */
export function deadLetterMessage(letter: DeadLetter, m: StoredMessage, sourcePartition: PartitionId): Message {
  assert(m.offset === letter.offset, 'the dead letter\'s own message');
  const headers: Header[] = m.headers.filter((h) => !h.name.startsWith(dlqHeaderPrefix));
  headers.push(
    { name: `${dlqHeaderPrefix}group`, value: text(letter.group) },
    { name: `${dlqHeaderPrefix}partition`, value: text(String(sourcePartition)) },
    { name: `${dlqHeaderPrefix}offset`, value: text(String(m.offset)) },
    { name: `${dlqHeaderPrefix}deliveries`, value: text(String(letter.deliveries)) },
    { name: `${dlqHeaderPrefix}reason`, value: text(letter.reason) },
  );
  return { key: m.key, value: m.value, headers };
}

export interface DeadLetterInfo {
  readonly group: ConsumerGroup;
  readonly partition: number;
  readonly offset: number;
  readonly deliveries: number;
  readonly reason: string;
}

/** The dsync-dlq-* headers of a dead-letter message, or null if it is not one. */
export function deadLetterInfo(m: Message): DeadLetterInfo | null {
  const get = (n: string): string | undefined => {
    const h = m.headers.find((x) => x.name === `${dlqHeaderPrefix}${n}`);
    return h === undefined ? undefined : decoder.decode(h.value);
  };
  const group = get('group');
  const partition = Number(get('partition'));
  const offset = Number(get('offset'));
  const deliveries = Number(get('deliveries'));
  const reason = get('reason');
  if (group === undefined || reason === undefined || !Number.isSafeInteger(partition) || !Number.isSafeInteger(offset) || !Number.isSafeInteger(deliveries)) {
    return null;
  }
  return { group: consumerGroup(group), partition, offset, deliveries, reason };
}

/**
 * One append for the source partition, from dead-letter messages at consecutive
 * offsets of dead-letter partition `dlqPartition` (of one topic).
 */
export function redriveAppend(topic: string, dlqPartition: PartitionId, messages: readonly StoredMessage[], nowMs: number): Append {
  assert(messages.length > 0, 'redrive at least one dead letter');
  const first = messages[0] as StoredMessage;
  const out: Message[] = messages.map((m, i) => {
    assert(m.offset === first.offset + i, 'redrive consecutive dead-letter offsets');
    const info = deadLetterInfo(m);
    assert(info !== null, `dead-letter offset ${m.offset} carries dsync-dlq-* headers`);
    assert(info.partition === dlqPartition, 'a dead-letter partition holds its own source partition\'s dead letters');
    return { key: m.key, value: m.value, headers: m.headers.filter((h) => !h.name.startsWith(dlqHeaderPrefix)), onlyGroup: info.group };
  });
  return { kind: 'append', producer: producerId(`dsync-redrive/${topic}/${dlqPartition}`), firstSeq: first.offset + 1, messages: out, nowMs };
}
