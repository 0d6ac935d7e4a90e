// `dsync topic`, `dsync publish` and `dsync consume`: queue topics and messages through
// the client library (one module; three entries in the dispatcher's table).

import { Client, type ReplayFrom, type TopicInfo } from '../../client/index.js';
import { type ParsedArgs, UsageError } from '../args.js';
import { clientFlagsHelp, clientOptionsFrom, clientValueFlags, type Command, intFlag, msFlag, positionalsAtMost, printable } from '../command.js';
import { queueMaxDeliveriesMax, queueTopicPartitionsMax } from '../../core/constants.js';

const seedsHelp = clientFlagsHelp;

function renderTopic(t: TopicInfo): string {
  const lines = [`topic ${t.name} (id ${t.id}): ${t.partitions} partitions x ${t.replicas} replicas, maxDeliveries ${t.maxDeliveries}, `
    + `ack deadline ${t.ackDeadlineMs} ms${t.deadLetterTopic === '' ? ', a dead-letter topic' : `, dead letters to ${t.deadLetterTopic}`}`];
  for (const p of t.partitionList) {
    let line = `  partition ${p.index}  group ${p.groupId}  leader ${p.leaderId === '' ? '-' : p.leaderId}  replicas ${p.replicas.join(',')}`;
    if (p.epoch > 0) line += `  epoch ${p.epoch}`;
    if (p.hosts !== undefined) line += `  moving (hosted on ${p.hosts.join(',')})`;
    if (p.logEnd !== undefined) {
      line += `  offsets [${p.logStart ?? 0}, ${p.logEnd})`;
      for (const g of p.groups ?? []) line += `  ${printable(g.group)}: lag ${g.lag}, in flight ${g.inFlight}, pending ${g.pending}`;
    }
    lines.push(line);
  }
  return lines.join('\n');
}

export const topicCommand: Command = {
  usage: 'dsync topic create NAME [--partitions N] [--replicas R] [--max-deliveries N] [--ack-deadline ms] | list | info NAME | delete NAME\n'
    + '       dsync topic replay NAME GROUP (--from-time TIME | --partition P --offset N)',
  summary: 'create, list, inspect and delete queue topics',
  help: `Subcommands:
  create NAME    a topic (and NAME.dlq for its dead letters), partitions placed on the nodes by the ring
  list           every topic
  info NAME      per partition: its Raft group, leader, replicas; offsets and lag per group where the answering node hosts it
  delete NAME    the topic and its dead-letter topic
  replay NAME GROUP
                 deliver again to GROUP: every partition from the first message at or after
                 --from-time (ISO 8601 or epoch ms), or one --partition from --offset
Options:
${seedsHelp}
  --partitions N       partitions (default 4; fixed for the topic's life)
  --replicas R         replicas per partition (default 3, at most the voters)
  --max-deliveries N   deliveries to one group before a message goes to NAME.dlq (default 5, 0 = never)
  --ack-deadline MS    default ack deadline (default 30000)
  --from-time TIME     replay: ISO 8601 time or epoch milliseconds
  --partition P        replay: the partition (with --offset)
  --offset N           replay: the offset in that partition
  --json               machine-readable output`,
  valueFlags: [...clientValueFlags, 'partitions', 'replicas', 'max-deliveries', 'ack-deadline', 'from-time', 'partition', 'offset'],
  switchFlags: ['json'],
  run: runTopic,
};

async function runTopic(args: ParsedArgs): Promise<number> {
  const [sub, name] = args.positionals;
  const json = args.switches.has('json');
  if (sub !== 'create' && sub !== 'list' && sub !== 'info' && sub !== 'delete' && sub !== 'replay') {
    throw new UsageError(`unknown topic subcommand '${printable(sub ?? '')}' (create, list, info, delete, replay)`);
  }
  positionalsAtMost(args, sub === 'list' ? 1 : sub === 'replay' ? 3 : 2);
  const from = sub === 'replay' ? replayFrom(args) : null;
  const group = args.positionals[2];
  if (sub === 'replay' && (group === undefined || group === '')) throw new UsageError('dsync topic replay needs a topic NAME and a consumer GROUP');
  const needName = (): string => {
    if (name === undefined || name === '') throw new UsageError(`dsync topic ${sub} needs a topic NAME`);
    return name;
  };
  const out = (value: unknown, text: string): void => { process.stdout.write((json ? JSON.stringify(value, null, 2) : text) + '\n'); };
  const partitions = intFlag(args, 'partitions', 1, queueTopicPartitionsMax);
  const replicas = intFlag(args, 'replicas', 1, Number.MAX_SAFE_INTEGER);
  const maxDeliveries = intFlag(args, 'max-deliveries', 0, queueMaxDeliveriesMax);
  const ackDeadlineMs = msFlag(args, 'ack-deadline', 1);
  const client = await Client.connect(clientOptionsFrom(args));
  try {
    switch (sub) {
      case 'create': {
        const t = await client.topics.create(needName(), {
          ...(partitions === undefined ? {} : { partitions }), ...(replicas === undefined ? {} : { replicas }),
          ...(maxDeliveries === undefined ? {} : { maxDeliveries }), ...(ackDeadlineMs === undefined ? {} : { ackDeadlineMs }),
        });
        out(t, `created ${renderTopic(t)}`);
        return 0;
      }
      case 'list': {
        const list = await client.topics.list();
        out(list, list.length === 0 ? '(no topics)' : list.map((t) => `${t.name}  ${t.partitions} partitions x ${t.replicas} replicas`).join('\n'));
        return 0;
      }
      case 'info': {
        const t = await client.topics.info(needName());
        out(t, renderTopic(t));
        return 0;
      }
      case 'delete': {
        await client.topics.delete(needName());
        out({ deleted: name }, `deleted ${printable(name ?? '')} and ${printable(name ?? '')}.dlq`);
        return 0;
      }
      case 'replay': {
        const moved = await client.topics.replay(needName(), group as string, from as ReplayFrom);
        out(moved, moved.map((m) => `${printable(group ?? '')} in partition ${m.partition} now at offset ${m.offset}`).join('\n'));
        return 0;
      }
    }
  } finally {
    await client.close();
  }
}

function replayFrom(args: ParsedArgs): ReplayFrom {
  const time = args.flags.get('from-time');
  const partition = intFlag(args, 'partition', 0, queueTopicPartitionsMax - 1);
  const offset = intFlag(args, 'offset', 0, Number.MAX_SAFE_INTEGER);
  if (time !== undefined) {
    if (partition !== undefined || offset !== undefined) throw new UsageError('--from-time replays every partition; not with --partition or --offset');
    const ms = /^\d+$/.test(time) ? Number(time) : Date.parse(time);
    if (!Number.isSafeInteger(ms) || ms < 0) throw new UsageError(`--from-time ${printable(time)} is neither an ISO 8601 time nor epoch milliseconds`);
    return { timestampMs: ms };
  }
  if (partition === undefined || offset === undefined) throw new UsageError('dsync topic replay needs --from-time, or --partition and --offset');
  return { partition, offset };
}

export const dlqCommand: Command = {
  usage: 'dsync dlq redrive TOPIC [--idle ms] [--max n]',
  summary: 'send a topic\'s dead letters back to the groups that gave up on them',
  help: `Subcommands:
  redrive TOPIC  moves every dead letter of TOPIC (held in TOPIC.dlq) back to its source
                 partition, visible only to the group that dead-lettered it, with its
                 delivery count reset; safe to repeat or to rerun after an interruption
Options:
${seedsHelp}
  --idle MS    stop once TOPIC.dlq offered nothing for this long (default 1000)
  --max N      move at most N dead letters
  --json       machine-readable output`,
  valueFlags: [...clientValueFlags, 'idle', 'max'],
  switchFlags: ['json'],
  run: async (args) => {
    const [sub, topic] = args.positionals;
    if (sub !== 'redrive') throw new UsageError(`unknown dlq subcommand '${printable(sub ?? '')}' (redrive)`);
    positionalsAtMost(args, 2);
    if (topic === undefined || topic === '') throw new UsageError('dsync dlq redrive needs a TOPIC');
    const idleMs = msFlag(args, 'idle', 1);
    const max = intFlag(args, 'max', 1, Number.MAX_SAFE_INTEGER);
    const client = await Client.connect(clientOptionsFrom(args));
    try {
      const r = await client.topics.redrive(topic, { ...(idleMs === undefined ? {} : { idleMs }), ...(max === undefined ? {} : { max }) });
      process.stdout.write((args.switches.has('json') ? JSON.stringify({ topic, ...r }) : `redrove ${r.redriven} dead letters of ${printable(topic)}`) + '\n');
      return 0;
    } finally {
      await client.close();
    }
  },
};

export const publishCommand: Command = {
  usage: 'dsync publish TOPIC KEY VALUE [--header name=value ...]',
  summary: 'publish one message to a queue topic',
  help: `Publishes VALUE under KEY (KEY picks the partition) and prints where it landed once it is
durable on a majority of the partition's replicas.
Options:
${seedsHelp}
  --header NAME=VALUE  a header (repeat the flag by joining with commas: --header a=1,b=2)
  --json               machine-readable output`,
  valueFlags: [...clientValueFlags, 'header'],
  switchFlags: ['json'],
  run: async (args) => {
    const [topic, key, value] = args.positionals;
    if (topic === undefined || key === undefined || value === undefined) throw new UsageError('dsync publish needs TOPIC KEY VALUE');
    positionalsAtMost(args, 3);
    const headers: Record<string, string> = {};
    for (const pair of (args.flags.get('header') ?? '').split(',').filter((s) => s !== '')) {
      const eq = pair.indexOf('=');
      if (eq <= 0) throw new UsageError(`--header wants NAME=VALUE, got '${printable(pair)}'`);
      headers[pair.slice(0, eq)] = pair.slice(eq + 1);
    }
    const client = await Client.connect(clientOptionsFrom(args));
    try {
      const r = await client.producer(topic).publish(key, value, { headers });
      process.stdout.write(args.switches.has('json') ? JSON.stringify({ topic, ...r }) + '\n' : `published to ${printable(topic)} partition ${r.partition} offset ${r.offset}\n`);
      return 0;
    } finally {
      await client.close();
    }
  },
};

export const consumeCommand: Command = {
  usage: 'dsync consume TOPIC GROUP [--count n] [--wait ms] [--no-ack]',
  summary: 'consume (and ack) messages of a queue topic as a member of a consumer group',
  help: `Prints each message as it arrives and acks it; stops after --count messages, when nothing
arrives for --wait ms (when given), or on Ctrl-C.
Options:
${seedsHelp}
  --count N     stop after N messages
  --wait MS     stop when no message arrives for this long
  --no-ack      nack each message instead (it comes back to the group)
  --json        one JSON object per message`,
  valueFlags: [...clientValueFlags, 'count', 'wait'],
  switchFlags: ['json', 'no-ack'],
  run: async (args) => {
    const [topic, group] = args.positionals;
    if (topic === undefined || group === undefined) throw new UsageError('dsync consume needs TOPIC GROUP');
    positionalsAtMost(args, 2);
    const count = intFlag(args, 'count', 1, Number.MAX_SAFE_INTEGER);
    const idleMs = msFlag(args, 'wait', 1);
    const json = args.switches.has('json');
    const dec = new TextDecoder();
    const client = await Client.connect(clientOptionsFrom(args));
    const consumer = client.consumer(topic, group, { waitMs: Math.min(idleMs ?? 2_000, 2_000) });
    const stop = (): void => { void consumer.close(); };
    process.once('SIGINT', stop);
    let idle: NodeJS.Timeout | null = null;
    const armIdle = (): void => {
      if (idle !== null) clearTimeout(idle);
      if (idleMs !== undefined) idle = setTimeout(stop, idleMs);
    };
    let n = 0;
    try {
      armIdle();
      for await (const m of consumer) {
        armIdle();
        const headers = Object.fromEntries(Object.entries(m.headers).map(([k, v]) => [k, dec.decode(v)]));
        process.stdout.write(json
          ? JSON.stringify({ partition: m.partition, offset: m.offset, key: dec.decode(m.key), value: dec.decode(m.value), headers, deliveries: m.deliveries }) + '\n'
          : `${m.partition}/${m.offset}  ${printable(dec.decode(m.key))}  ${printable(dec.decode(m.value))}${m.deliveries > 1 ? `  (delivery ${m.deliveries})` : ''}\n`);
        if (args.switches.has('no-ack')) await m.nack(0);
        else await m.ack();
        if (count !== undefined && ++n >= count) break;
      }
      return 0;
    } finally {
      if (idle !== null) clearTimeout(idle);
      process.off('SIGINT', stop);
      await consumer.close();
      await client.close();
    }
  },
};
