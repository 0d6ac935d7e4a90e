// Checks that a node refuses malformed peer input without falling over (issue 7,
// item 10): a real `dsync node` n1 that lists n2 as a peer; a raw socket says hello
// as n2 and pushes RaftBatches. A well-formed one keeps the link open (a ping on
// it is answered); one with a message addressed to another node gets the link
// closed with a reason in the log; the node still serves clients afterwards.

import t from 'tap';
import { protocolVersion } from '../../core/constants.js';
import { MessageType } from '../../core/raft/types.js';
import { encodeFrame, FrameType, Opcode, schema } from '../../protocol/index.js';
import { freePorts, tempDir, TestNode, waitUntilServing } from './helpers/cluster.js';
import { pingFrame, raftPush, RawConnection } from './helpers/raw.js';

t.test('a malformed raft batch closes that peer link; the node keeps serving', async (t) => {
  const [port, httpPort, consolePort, n2Port] = await freePorts(4);
  const node = new TestNode(t, { id: 'n1', port: port!, httpPort: httpPort!, consolePort: consolePort!, dataDir: tempDir(t),
    peers: [`n2@127.0.0.1:${n2Port!}`] });
  await node.start();

  const raw = await RawConnection.open(port!);
  t.teardown(() => raw.destroy());
  raw.write(encodeFrame(FrameType.Request, Opcode.Hello, 1, schema.Hello.encode({ role: schema.Role.ROLE_PEER, protocolVersion,
    name: 'n2', advertise: `127.0.0.1:${n2Port!}` }).finish()));
  await raw.waitFrames(1);

  // Well-formed: a heartbeat response of an old term (Raft ignores it), then a ping on the same link.
  raw.write(raftPush([schema.RaftMessage.create({ group: 0, type: MessageType.HeartbeatResp, from: 'n2', to: 'n1', term: 0 })]));
  raw.write(pingFrame(2, new Uint8Array([7])));
  const afterValid = await raw.waitFrames(2);
  t.equal(afterValid[1]?.type, FrameType.Response, 'after a well-formed batch the link is open and answers a ping');

  raw.write(raftPush([schema.RaftMessage.create({ group: 0, type: MessageType.Heartbeat, from: 'n2', to: 'n9', term: 1 })]));
  await raw.waitClosed();
  t.ok(raw.isClosed, 'a batch with a message for another node closes the link');

  await waitUntilServing(node.address, 5_000);
  t.ok(node.process.running, 'the node is still running');
  t.match(node.process.stderr, /malformed raft message from n2: it is addressed to \\"n9\\"/, 'and logged why it closed the link');
  await node.stop();
});
