// Every bound in dsync, in one place, with the checks of how they relate.
// Names carry the unit last (frameBytesMax, electionTimeoutTicksMin).

import { assert } from './assert.js';

// --- wire protocol ---
export const protocolVersion = 1;
/**
 * Storage and snapshot feature versions (etcd's cluster version). A node says the one it
 * speaks in its peer hello; group 0 records it per member, and the cluster version is the
 * highest version every member has spoken (it never goes down). A node writes a format only
 * once the cluster version includes it.
 * 1: group 0 snapshots as one JSON document (lock table version 3); partition snapshots carry their bodies.
 * 2: group 0 snapshots in the chunked layout (lock table version 4, written in slices);
 *    partition snapshots without bodies (bodies_in_store), installed by streamed catch-up.
 */
export const featureVersionBase = 1;
export const featureVersionSnapshotsStreamed = 2;
export const featureVersionCurrent = 2;
/** Largest frame (after the length prefix) a peer may send; checked before buffering. */
export const frameBytesMax = 4 * 1024 * 1024;
/** Bytes in the fixed frame header after the u32 length: version u8, type u8, opcode u16, request id u32. */
export const frameHeaderBytes = 8;
export const frameLengthPrefixBytes = 4;

// --- connections ---
export const pendingRequestsPerConnectionMax = 4096;
/** Bytes queued for one socket before we stop reading from it (backpressure). */
export const connectionWriteQueueBytesMax = 8 * 1024 * 1024;
export const connectionIdleMsMax = 5 * 60 * 1000;
export const helloTimeoutMs = 10_000;
export const connectionsMax = 10_000;
/** Beyond connectionsMax, this many more sockets are accepted only to be told TOO_MANY_CONNECTIONS; later ones are dropped unanswered. */
export const connectionsRefusedAnsweredMax = 64;
/** Shortest accepted auth token (characters): guessing one must be hopeless. */
export const authTokenBytesMin = 16;
/** Credentials one token file may hold. */
export const authCredentialsMax = 1024;
/** Highest per-connection request rate a node accepts as a setting (requests/s). */
export const requestRatePerConnectionMax = 1_000_000;
export const peerReconnectBackoffMsMin = 50;
export const peerReconnectBackoffMsMax = 2_000;

// --- client ---
export const clientRequestTimeoutMsDefault = 5_000;
export const clientConnectTimeoutMsDefault = 3_000;
/**
 * Longest wait for one node's answer to a request that is safe to repeat before the
 * client tries another member: a paused leader costs one attempt, not the whole deadline.
 */
export const clientAttemptTimeoutMsDefault = 1_000;
/**
 * The client stops trusting its lock session this fraction of the TTL before renewal + TTL:
 * room for the leader's clock running faster than the client's (two clocks each off by up to 5%).
 */
export const clientLeaseDriftFraction = 0.1;
/** Attempts per request (NOT_LEADER redirects and retries on other members). */
export const clientRequestAttemptsMaxDefault = 8;
/** Pause before retrying on another member, doubling per retry between these. */
export const clientRetryBackoffMsMin = 50;
export const clientRetryBackoffMsMax = 500;
/** Message bytes one client Publish frame batches (a larger single message goes alone). */
export const clientPublishBatchBytesMax = 1024 * 1024;
/** A consumer's unsettled deliveries at once, by default. */
export const clientConsumerMaxInFlightDefault = 256;
/** A consumer's long-poll wait per fetch, by default. */
export const clientConsumerFetchWaitMsDefault = 2_000;
/** Background retries of a release whose answer never came, before the session is given up instead. */
export const clientReleaseRetryCountMax = 64;

// --- raft ---
export const raftTickMs = 10;
export const electionTimeoutTicksMin = 30;
export const electionTimeoutTicksMax = 60;
export const heartbeatIntervalTicks = 5;
/**
 * The per-node settings ELECTION_TIMEOUT_MIN/MAX and HEARTBEAT_INTERVAL (milliseconds, whole
 * ticks) default to the tick constants above and are validated against these bounds at start.
 * ELECTION_TIMEOUT_MAX stays below sessionTtlMsMin (a session outlives an election), which also
 * keeps it within memberHeardMsMax, leaderTransferWaitMsMax and queueAckDeadlineMsMin (checked below).
 */
export const heartbeatIntervalMsMin = raftTickMs;
export const heartbeatIntervalMsMax = 1_000;
export const electionTimeoutMsMin = 3 * raftTickMs;
/** Heartbeats per shortest election timeout at least: a follower hears a few before it would campaign. */
export const electionTimeoutHeartbeatsMin = 3;
/** Entries per append message: bounds message size and per-message work. */
export const appendEntriesCountMax = 512;
/** Entry data bytes per append message (one larger entry still goes alone): keeps a peer frame under frameBytesMax. */
export const appendEntriesBytesMax = 1024 * 1024;
/** A peer frame of Raft messages (RaftBatch) is cut before it holds this many bytes of entries and snapshots. */
export const raftBatchBytesMax = 2 * 1024 * 1024;
/** Append messages a leader keeps in flight to one follower (pipelining). */
export const inflightAppendsMax = 64;
/** Proposals a group buffers before answering UNAVAILABLE. */
export const proposalsPendingMax = 65_536;
/** The retry hint (ErrorReply.retry_after_ms) sent with an overload answer: UNAVAILABLE, TOO_MANY_REQUESTS. */
export const overloadRetryAfterMs = 100;

// --- cluster membership (group 0) ---
/** Bytes of application context a conf change entry may carry (a member's addresses). */
export const confChangeContextBytesMax = 1024;
/** Members group 0 may hold (voters + learners); a join beyond it is refused. */
export const membersMax = 64;
/** Characters of a cluster id (hex of random bytes chosen when group 0 first elects a leader). */
export const clusterIdBytes = 8;
/** Removed node ids remembered (a removed id may not rejoin); the oldest are forgotten beyond it. */
export const membersRemovedRememberedMax = 1024;
/** Longest address (host:port) a member may advertise, in characters. */
export const memberAddressCharsMax = 300;
/**
 * A learner is promoted to voter once its match index is within this many entries of
 * the leader's last index (caught up: promoting it cannot stall commits for long).
 */
export const learnerPromoteLagEntriesMax = 64;
/** How often the group 0 leader looks for learners to promote and members without addresses. */
export const membersCheckIntervalMs = 100;
/**
 * A voter counts as live for the quorum check of a removal when the leader heard from it
 * within this long (check-quorum's window is one election timeout; this allows for a busy loop).
 */
export const memberHeardMsMax = 1_000;
/** Attempts a joining node makes to be added (following NOT_LEADER, retrying UNAVAILABLE) before it gives up. */
export const joinAttemptsMax = 60;
/** Pause between join attempts, doubling between these. */
export const joinRetryBackoffMsMin = 100;
export const joinRetryBackoffMsMax = 1_000;
/** Deadline of one join attempt (connect, hello, the leader committing the change). */
export const joinAttemptTimeoutMs = 5_000;
/** How long the leader waits for a leadership transfer before its own removal is answered NOT_LEADER. */
export const leaderTransferWaitMsMax = 2_000;
/** Applied entries after which a group snapshots and compacts its log (the node setting snapshot-entries). */
export const snapshotEntriesThreshold = 10_000;
export const snapshotEntriesSettingMin = 100;
export const snapshotEntriesSettingMax = 10_000_000;
/**
 * A Raft message too large for one peer batch (a snapshot: a queue partition's carries its
 * retained bodies) travels as chunks of this size, paced by the peer link's write queue, and
 * is stepped whole once every chunk arrived in order.
 */
export const raftSnapshotChunkBytes = 1024 * 1024;
/** The largest snapshot message a node sends or reassembles (both sides hold it in memory). */
export const raftSnapshotTransferBytesMax = 1024 * 1024 * 1024;
/** A half-received snapshot whose sender sent nothing for this long is dropped (Raft sends it again). */
export const raftSnapshotAssemblyIdleMsMax = 30_000;
/** Snapshot chunks are handed to a peer link only while its write queue holds less than this. */
export const raftSnapshotSendQueueBytes = 4 * 1024 * 1024;
/**
 * Readys one group may have handed to the WAL and not yet seen durable (pipelined storage
 * writes): the next is taken while earlier fsyncs are in flight, up to this many.
 */
export const raftReadysInFlightMax = 8;
/** Committed entries handed out in one Ready (bounds apply work per ready()). */
export const raftReadyCommittedEntriesMax = 4096;
/** ReadIndex requests a leader holds waiting for a heartbeat quorum (more are dropped; the caller retries). */
export const raftReadRequestsPendingMax = 4096;
/**
 * Ticks a linearizable read may wait for its ReadIndex answer before it fails with
 * UNAVAILABLE (retry). Peer sends are fire and forget, so a follower's forwarded
 * ReadIndex (or the answer) can be lost, and nothing else would ever end that wait.
 * Two election timeouts: a live leader answers within a heartbeat round trip.
 */
export const raftReadTimeoutTicks = 2 * electionTimeoutTicksMax;
/** Random bytes per boot that prefix a node's ReadIndex contexts (a restart never reuses one). */
export const readContextNonceBytes = 8;
/** A ReadIndex context: the boot nonce, then a u64 read counter. */
export const readContextBytes = readContextNonceBytes + 8;
/** Bytes of a peer's Raft message context (read contexts, the campaign-transfer marker); more is malformed. */
export const raftMessageContextBytesMax = 64;

// --- storage ---
export const walSegmentBytesMax = 64 * 1024 * 1024;
export const walRecordBytesMax = frameBytesMax + 1024;
export const walRingBytes = 32 * 1024 * 1024;
/** Bytes of encoded records the WAL keeps in JS memory while the ring is full; beyond it append() throws WalOverloadError. */
export const walPendingBytesMax = 256 * 1024 * 1024;
/**
 * Queued WAL bytes kept free of proposals: proposals are refused (UNAVAILABLE) once the
 * queue would come within this of walPendingBytesMax, so hard states and a follower's
 * appends always fit and append() never overflows because clients sent too much.
 */
export const walProposalHeadroomBytes = 64 * 1024 * 1024;
/** whenDurable() promises outstanding at once (one per in-flight Ready per group is the expected use). */
export const walDurableWaitersMax = 1_000_000;
/** UTF-8 bytes of a node id stored in a hard state vote or a snapshot's configuration. */
export const walNodeIdBytesMax = 255;
/** Members listed in a snapshot's configuration (voters plus learners). */
export const walSnapshotMembersMax = 1024;
/** Application bytes in one group snapshot file. */
export const walSnapshotDataBytesMax = 1024 * 1024 * 1024;

// --- locks ---
export const waitersPerLockMax = 10_000;
export const locksPerSessionMax = 100_000;
/**
 * Weight of one slice of a lock table snapshot written in slices (records, plus the holds,
 * waits, dedup lanes, holders and waiters in them): what one turn of the event loop spends
 * on it is bounded by this, not by the table. One session is one record whatever it holds
 * (up to locksPerSessionMax), so a slice can exceed this by one session.
 */
export const lockSnapshotSliceWeightMax = 2_000;
export const sessionTtlMsMin = 1_000;
export const sessionTtlMsMax = 10 * 60 * 1000;
export const sessionTtlMsDefault = 10_000;
export const lockNameBytesMax = 512;
/** Longest lock-delay a session may ask for (held back after its session expires). */
export const lockDelayMsMax = 60_000;
/** Client-chosen id of an acquire request, echoed in grant/failure events. */
export const requestIdBytesMax = 128;
/** Dedup entries kept for sessionless requests (forceRelease): least recently used evicted first. */
export const dedupClientsWithoutSessionMax = 1024;
/** Tombstones (client id + last seq) of evicted sessionless entries: a retry of one answers STALE_REQUEST. */
export const dedupEvictedClientsMax = 65_536;
/** Acquires one lock-service leader keeps waiting for an answer (beyond: UNAVAILABLE with a retry hint). */
export const lockParkedAcquiresMax = 65_536;
/** Client connections per session the leader remembers, to push LockLost to (a client keeps one per node). */
export const lockSessionLinksMax = 16;
/** How long a client should wait before retrying when the lock service is overloaded. */
export const lockOverloadRetryAfterMs = 100;
/** Client ids (lanes) whose dedup entries one session keeps: the most lanes one client opens (client/locks). */
export const dedupLanesPerSessionMax = 1024;

// --- cache (core/cache) ---
/** Cache nodes in one cluster: a node is a bit in a directory entry's u32 sharer mask. */
export const cacheNodesMax = 32;
/** Directory entries one home keeps (keys it is home of with state in memory); an idle entry is freed for a new key. */
export const cacheHomeEntriesMaxDefault = 65_536;
/** Requests waiting behind busy directory entries, over all keys of one home (a pool of records). */
export const cacheHomeQueuedRequestsMax = 65_536;
/** Requests waiting behind one busy directory entry; more are answered with a Nack (retry). */
export const cacheHomeQueuePerKeyMax = 64;
/** Least recently used entries a home looks at to find one to free or evict when its directory is full. */
export const cacheEvictScanMax = 16;
/** Lines one node caches by default (LRU beyond). */
export const cacheLineEntriesMaxDefault = 65_536;
/** Bytes of keys and values one node caches by default (LRU beyond). */
export const cacheLineBytesMaxDefault = 64 * 1024 * 1024;
/** Keys with a request in flight from one node to their homes (each holds the client ops queued behind it). */
export const cacheNodeTransactionsMax = 4_096;
/** Client operations one node holds waiting (over all keys). */
export const cacheNodeOpsPendingMax = 65_536;
export const cacheKeyBytesMax = 512;
export const cacheValueBytesMax = 1024 * 1024;
export const cacheLeaseMsMin = 250;
export const cacheLeaseMsDefault = 2_000;
export const cacheLeaseMsMax = 60_000;
/**
 * Subtracted from a lease on the holder's side: the clock-rate difference a lease
 * tolerates between a node and a home over one lease (a node stops serving first).
 */
export const cacheLeaseDriftMarginMs = 50;
/** Resend period of a request or invalidation without an answer. */
export const cacheRetryMsDefault = 100;
/**
 * Longest a node keeps resending one write (Write, or a GetM carrying it) before it gives
 * the write up with an unknown outcome, in leases: as long as the client's deadline allows
 * (CacheRequest.wait_ms), at least one lease, at most this many. A home keeps recognising
 * a write's resends that long after it applied it (an entry is not freed sooner), so a late
 * resend is answered again instead of applied twice. A set may have to wait out a silent
 * holder's lease at its home, and behind it other writers' rounds and a new home's first
 * lease: one lease was too short for any of that.
 */
export const cacheWriteWaitLeasesMax = 8;
/**
 * Keys whose home (ring owner) a node remembers per ring generation, so a renewal round or a
 * miss does not hash the key again (forgotten all at once beyond this).
 */
export const cacheHomeOfMemoKeysMax = 65_536;
/** What a client leaves off its own deadline when it tells the node how long a write may wait (the answer must still reach it). */
export const cacheClientWaitMarginMs = 500;
export const cacheRetryMsMin = 5;
/**
 * Lines renewed in batches (one RenewBatch per home per round): a line read within this
 * many leases (32 s at the default lease) is renewed before it runs out; one not read
 * that long lapses. A renewal costs a key in a batch every half lease, a lapse a miss (a
 * round trip to the home): long enough that a working set read every few seconds per node
 * stays cached.
 */
export const cacheRenewIdleLeases = 16;
/** Renewal rounds per lease: a line is asked for when its lease is past half, and again a round later if unanswered. */
export const cacheRenewRoundsPerLease = 8;
/** Keys in one RenewBatch (a larger round sends several to the same home). */
export const cacheRenewBatchKeysMax = 2_048;
/** Keys, and their bytes (as keyBytes counts them), one renewal round sends over all homes; the rest wait for the next round. */
export const cacheRenewRoundKeysMax = 16_384;
export const cacheRenewRoundKeyBytesMax = 1024 * 1024;
/**
 * A line's own lease, in (volume) leases: 32 s at the default lease. A line is served only
 * while its own lease AND its home's volume lease to the node are valid (core/cache/home.ts);
 * the volume lease is the short one, renewed per home, so a line's own lease only has to be
 * renewed every half of this (a renewal round every line lease / cacheRenewRoundsPerLease).
 */
export const cacheLineLeaseVolumes = 16;
/**
 * Rounds one VolumeGranted may carry as revocations (the rounds of its home still waiting
 * on the node). With more waiting, the home does not renew the node's volume lease: it
 * lapses, the node stops serving that home's lines, and the rounds end by the lease.
 */
export const cacheVolumeRevokesMax = 2_048;
/** Largest version: a key's version is a u32 and never wraps. */
export const cacheVersionMax = 0xffff_ffff;
/** Longest TTL a set may carry. */
export const cacheTtlMsMax = 365 * 24 * 60 * 60 * 1000;
/** Backing-store operations (Redis) in flight at one node; beyond it new client operations are refused (TOO_MANY_REQUESTS). */
export const cacheMemoryOpsInFlightMax = 4_096;
/** The group 0 leader takes a voter out of the cache ring after not hearing from it this long (CACHE_NODE_DOWN_MS). */
export const cacheNodeDownMsDefault = 3_000;
export const cacheNodeDownMsMin = 200;
export const cacheNodeDownMsMax = 600_000;
/** Fenced cache writes: locks whose newest token one home remembers (least recently fenced forgotten first). */
export const cacheFenceLocksMax = 65_536;
// --- ring ---
/** Virtual nodes per member on the consistent-hash ring (ARCHITECTURE.md: 150). */
export const ringVnodesPerNodeDefault = 150;
export const ringVnodesPerNodeMax = 1024;
/** Members one ring holds (positions = members x vnodes, kept in one Uint32Array). */
export const ringNodesMax = 1024;
/** UTF-8 bytes of a ring member's id (hashed with "#<vnode>" appended). */
export const ringNodeIdBytesMax = 255;
/** Replicas per queue partition by default (the first is the preferred leader). */
export const ringReplicasDefault = 3;
/** Highest QUEUE_REPLICAS a node accepts as the default for new topics (more replicas cost every write). */
export const queueReplicasSettingMax = 7;
/** Highest MESSAGE_RETENTION_PERIOD (ms): ten years. */
export const queueRetentionMsSettingMax = 10 * 365 * 24 * 3600 * 1000;
/**
 * Partition placement caps each member at loadFactor x the mean number of replicas
 * (consistent hashing with bounded loads): max/mean <= 1.25 whatever the sampling noise.
 */
export const ringPlacementLoadFactor = 1.25;

// --- queues (one partition's state machine, core/queue) ---
/** Key + value + header names and values of one message. */
export const queueMessageBytesMax = 1024 * 1024;
/** Messages in one append entry. */
export const queueAppendBatchCountMax = 1024;
export const queueHeadersPerMessageMax = 64;
/** UTF-8 bytes of a group name, consumer id, producer id or header name. */
export const queueNameBytesMax = 255;
/** Deliveries one fetch hands out. */
export const queueFetchCountMax = 1024;
/**
 * Message bytes one fetch hands out beyond its first delivery (which goes whatever its
 * size): the answer, bodies included, must fit one frame. Sixteen 256 KiB messages made a
 * 4 MiB answer that no frame could carry, and the consumer waited for nothing.
 */
export const queueFetchBytesMax = 2 * 1024 * 1024;
/** Deliveries one ack entry settles. */
export const queueAckBatchCountMax = 1024;
/** Deliveries one consumer holds unacked at once (the topic may set less). */
export const queueInflightPerConsumerMaxDefault = 1024;
export const queueInflightPerConsumerMax = 65_536;
/** Offsets between a group's cursor and its next new delivery: bounds per-group memory (JetStream's max_ack_pending). */
export const queueUnackedPerGroupMaxDefault = 65_536;
export const queueUnackedPerGroupMax = 1_048_576;
/** Consumers a group remembers per partition (idle ones are forgotten first when full). */
export const queueConsumersPerGroupMax = 1024;
export const queueGroupsPerPartitionMax = 256;
/** Producers whose dedup state a partition keeps (least recently appending forgotten first). */
export const queueProducersPerPartitionMax = 16_384;
/** Recent batches remembered per producer: a retry of any of them answers its original offsets. */
export const queueProducerBatchesRemembered = 5;
export const queueAckDeadlineMsMin = 1_000;
export const queueAckDeadlineMsDefault = 30_000;
export const queueAckDeadlineMsMax = 12 * 60 * 60 * 1000;
/** Deliveries of one message to one group before it is dead-lettered (0 in a topic = never). */
export const queueMaxDeliveriesDefault = 5;
export const queueMaxDeliveriesMax = 1_000;
/** nack without a delay: min x 2^(attempt-1), capped at max. */
export const queueNackBackoffMsMin = 1_000;
export const queueNackBackoffMsMax = 60_000;
/** Longest delay a nack may ask for. */
export const queueNackDelayMsMax = 24 * 60 * 60 * 1000;
/** Redriven messages (each visible to one group only) a partition retains. */
export const queueRedrivenRetainedMax = 65_536;

// --- queue storage (server/storage/queue-store.ts: one segment store per partition) ---
/** Bytes per queue segment file before the store starts the next one (front truncation deletes whole segments). */
export const queueSegmentBytesMax = 64 * 1024 * 1024;
/** One stored record: a maximal message plus its framing (24-byte header, lengths, header names, redrive group). */
export const queueStoreRecordBytesMax = queueMessageBytesMax + 64 * 1024;
/** In-memory index per retained message: u32 file position, u32 timestamp delta, u32 size (typed arrays). */
export const queueStoreIndexBytesPerMessage = 12;
/** Bytes of whole records in one export chunk streamed to a lagging replica. */
export const queueStoreChunkBytesMax = 2 * 1024 * 1024;
/**
 * Streamed catch-up (server/services/queues/catchup.ts): a replica installing a partition
 * snapshot pulls the bodies it lacks in chunks of at most this many bytes of records...
 */
export const queueCatchUpChunkBytes = 1024 * 1024;
/** ...at most this many chunks per pull: the sender's link and the receiver hold no more than these at a time. */
export const queueCatchUpChunksPerPull = 4;
/** A pull whose chunks have not all arrived after this long is asked again (from what arrived): peer pushes may be dropped. */
export const queueCatchUpPullTimeoutMs = 2_000;
/** Appended bytes a store buffers before it writes them (a sync, a roll or a read of them writes sooner). */
export const queueStoreWriteBufferBytes = 64 * 1024;
/** Read-ahead block: a read of a small record fetches this much, so the next offsets come from memory. */
export const queueStoreReadBlockBytes = 32 * 1024;
/** Read cache per store (whole blocks, least recently used evicted). */
export const queueStoreReadCacheBytesMax = 256 * 1024;
/** Sealed segment files a store keeps open for reads (least recently used closed); the active one is extra. */
export const queueStoreReadFilesMax = 4;
/** Recovery reads segments through a buffer this large (it must hold one maximal record). */
export const queueStoreScanBufferBytes = 2 * 1024 * 1024;

// --- operators: console, CLI, supervisor ---
/** Bytes of one console line; a longer line is answered once and skipped to its newline. */
export const consoleLineBytesMax = 4096;
/** How long `dsync console` waits for a port's console banner before saying it is not a console. */
export const consoleBannerWaitMs = 2_000;
/** Round trips one `dsync ping` may ask for. */
export const pingCountMax = 10_000;
/** Nodes one `dsync cluster` runs. */
export const clusterNodesMax = 9;
/** How long a local cluster's nodes get to report listening and answer as themselves. */
export const clusterStartMsMax = 20_000;
/** How long stopped nodes get to exit before the supervisor kills them. */
export const clusterStopGraceMs = 5_000;
/** Pause before restarting a node that died, doubling per restart between these. */
export const clusterRestartBackoffMsMin = 250;
export const clusterRestartBackoffMsMax = 10_000;
/** A node up this long before it dies starts its restart backoff over. */
export const clusterRestartStableMs = 30_000;

assert(frameHeaderBytes === 1 + 1 + 2 + 4, 'frame header layout');
assert(clusterRestartBackoffMsMin > 0 && clusterRestartBackoffMsMin <= clusterRestartBackoffMsMax && clusterRestartStableMs > clusterRestartBackoffMsMax,
  'supervisor backoff range; a node that outlived the longest backoff counts as stable');
assert(frameBytesMax < 2 ** 24, 'the first byte of every frame (its length, big-endian) is 0: other first bytes mean another protocol');
assert(electionTimeoutTicksMin > 2 * heartbeatIntervalTicks, 'election timeout must exceed several heartbeats');
assert(electionTimeoutTicksMax > electionTimeoutTicksMin, 'election timeout range must be non-empty');
assert(raftReadTimeoutTicks >= 2 * electionTimeoutTicksMax, 'a read outlives an election before it is given up');
assert(walRecordBytesMax > frameBytesMax, 'a WAL record must fit any proposal that fits a frame');
assert(walRingBytes >= 4 * walRecordBytesMax, 'the WAL ring must hold several maximal records');
assert(walSegmentBytesMax >= walRecordBytesMax, 'a WAL segment must hold a maximal record');
assert(walPendingBytesMax >= walRingBytes, 'the WAL overflow queue must hold at least a ring of records');
assert(raftMessageContextBytesMax >= readContextBytes, 'a read context fits a peer message context');
assert(readContextNonceBytes >= 8 && readContextBytes === readContextNonceBytes + 8, 'read context: a 64-bit nonce and a u64 counter');
assert(walPendingBytesMax >= 2 * walProposalHeadroomBytes && walProposalHeadroomBytes >= 4 * walRecordBytesMax,
  'WAL headroom holds several maximal records and leaves proposals at least half the queue');
assert(overloadRetryAfterMs > 0 && overloadRetryAfterMs < clientRequestTimeoutMsDefault, 'a retry hint shorter than a request timeout');
assert(peerReconnectBackoffMsMax >= peerReconnectBackoffMsMin, 'backoff range');
assert(memberHeardMsMax >= electionTimeoutTicksMin * raftTickMs, 'a live voter is one heard from within at least an election timeout');
assert(learnerPromoteLagEntriesMax > 0 && learnerPromoteLagEntriesMax < appendEntriesCountMax, 'a caught-up learner is within one append batch');
assert(joinRetryBackoffMsMax >= joinRetryBackoffMsMin && joinAttemptsMax > 0 && membersMax >= 3, 'join and membership bounds');
assert(leaderTransferWaitMsMax >= electionTimeoutTicksMax * raftTickMs, 'a transfer gets at least an election timeout');
assert(clientRetryBackoffMsMax >= clientRetryBackoffMsMin && clientRetryBackoffMsMin > 0, 'client backoff range');
assert(clientAttemptTimeoutMsDefault < clientRequestTimeoutMsDefault, 'an attempt is shorter than the whole request');
assert(clientLeaseDriftFraction > 0 && clientLeaseDriftFraction < 0.5, 'the drift margin leaves most of the TTL usable');
assert(clientRequestAttemptsMaxDefault >= 3 && clientReleaseRetryCountMax > 0, 'a request may try every member of a 3-node cluster');
assert(sessionTtlMsMin > electionTimeoutTicksMax * raftTickMs, 'a session must outlive one election');
assert(electionTimeoutTicksMin >= electionTimeoutHeartbeatsMin * heartbeatIntervalTicks && electionTimeoutMsMin >= electionTimeoutHeartbeatsMin * heartbeatIntervalMsMin,
  'the default and the lowest election timeout leave room for several heartbeats');
assert(heartbeatIntervalTicks * raftTickMs >= heartbeatIntervalMsMin && heartbeatIntervalTicks * raftTickMs <= heartbeatIntervalMsMax, 'heartbeat default within range');
assert(sessionTtlMsMin <= memberHeardMsMax && sessionTtlMsMin <= leaderTransferWaitMsMax && sessionTtlMsMin <= queueAckDeadlineMsMin,
  'an election timeout below the shortest session TTL also fits the liveness, transfer and ack-deadline windows');
assert(sessionTtlMsMin <= sessionTtlMsDefault && sessionTtlMsDefault <= sessionTtlMsMax, 'session TTL default within range');
assert(lockDelayMsMax >= 0 && lockDelayMsMax <= sessionTtlMsMax, 'lock-delay no longer than a session TTL');
assert(waitersPerLockMax <= locksPerSessionMax * 1_000 && dedupClientsWithoutSessionMax > 0, 'lock bounds positive');
assert(dedupEvictedClientsMax >= dedupClientsWithoutSessionMax, 'tombstones outlast the entries they replace');
assert(dedupLanesPerSessionMax > 0, 'a session accepts requests from at least one client id');
assert(cacheNodesMax <= 32, 'a cache node is a bit in a u32 sharer mask');
assert(cacheHomeQueuePerKeyMax <= cacheHomeQueuedRequestsMax && cacheEvictScanMax > 0, 'cache home queue bounds');
assert(cacheLeaseMsMin > 4 * cacheLeaseDriftMarginMs, 'a lease outlasts its drift margin several times');
assert(cacheLeaseMsMin <= cacheLeaseMsDefault && cacheLeaseMsDefault <= cacheLeaseMsMax, 'cache lease default within range');
assert(cacheRetryMsMin <= cacheRetryMsDefault && 4 * cacheRetryMsDefault <= cacheLeaseMsDefault, 'several retries fit in a lease');
assert(cacheValueBytesMax + cacheKeyBytesMax < frameBytesMax, 'a cache value and key fit in one frame');
// A round's keys (UTF-8: at most 1.5x keyBytes) plus ~32 bytes of fields each, asked or answered, take at most half a peer frame.
assert(1.5 * cacheRenewRoundKeyBytesMax + 32 * cacheRenewRoundKeysMax <= frameBytesMax / 2 && cacheRenewBatchKeysMax <= cacheRenewRoundKeysMax, 'a renewal round and its answer fit in a peer frame');
assert(cacheWriteWaitLeasesMax >= 1, 'a write may wait at least one lease');
assert(cacheLineLeaseVolumes >= 2 && cacheLineLeaseVolumes <= cacheRenewIdleLeases, 'a line lease outlasts its volume lease; a line read within the idle window is renewed');
assert(cacheVolumeRevokesMax * (cacheKeyBytesMax + 32) <= frameBytesMax / 2, 'a volume grant and its revocations fit in a peer frame');
assert(cacheRenewIdleLeases >= 1 && cacheRenewRoundsPerLease >= 4, 'a line read within a lease is renewed, and asked for twice before its lease ends');
assert(cacheLineBytesMaxDefault >= 4 * (cacheValueBytesMax + cacheKeyBytesMax), 'a node caches several maximal values');
assert(cacheNodeTransactionsMax <= cacheNodeOpsPendingMax, 'every transaction holds at least one op');
assert(cacheNodeDownMsMin <= cacheNodeDownMsDefault && cacheNodeDownMsDefault <= cacheNodeDownMsMax && cacheNodeDownMsMin >= 2 * cacheRetryMsDefault, 'cache node-down time within range, several resends long');
assert(cacheMemoryOpsInFlightMax > 0 && cacheMemoryOpsInFlightMax <= cacheHomeEntriesMaxDefault, 'one memory operation per home entry at most');
assert(ringVnodesPerNodeDefault > 0 && ringVnodesPerNodeDefault <= ringVnodesPerNodeMax, 'ring vnode default within range');
assert(ringNodesMax * ringVnodesPerNodeMax <= 2 ** 20, 'a position and its ordinal pack into one float64 sort key (32 + 20 bits)');
assert(ringReplicasDefault >= 1 && ringReplicasDefault <= ringNodesMax, 'replica default positive');
assert(ringPlacementLoadFactor > 1 && ringPlacementLoadFactor <= 1.3, 'placement cap: above the mean, within the 1.3 load bound');
assert(queueFetchCountMax <= queueInflightPerConsumerMaxDefault && queueInflightPerConsumerMaxDefault <= queueInflightPerConsumerMax,
  'a fetch fits a consumer\'s default in-flight bound');
assert(queueInflightPerConsumerMaxDefault <= queueUnackedPerGroupMaxDefault && queueUnackedPerGroupMaxDefault <= queueUnackedPerGroupMax,
  'one consumer\'s in-flight fits its group\'s unacked window');
assert(queueMessageBytesMax + 64 * 1024 <= frameBytesMax, 'a maximal message fits a frame with room for its envelope');
assert(queueAckDeadlineMsMin > electionTimeoutTicksMax * raftTickMs, 'an ack deadline outlasts one election (no redelivery storm per failover)');
assert(queueAckDeadlineMsMin <= queueAckDeadlineMsDefault && queueAckDeadlineMsDefault <= queueAckDeadlineMsMax, 'ack deadline default within range');
assert(queueMaxDeliveriesDefault >= 1 && queueMaxDeliveriesDefault <= queueMaxDeliveriesMax, 'max deliveries default within range');
assert(queueNackBackoffMsMin > 0 && queueNackBackoffMsMin <= queueNackBackoffMsMax && queueNackBackoffMsMax <= queueNackDelayMsMax, 'nack backoff range');
assert(queueProducerBatchesRemembered >= 1 && queueProducersPerPartitionMax > 0 && queueConsumersPerGroupMax > 0 && queueGroupsPerPartitionMax > 0,
  'queue dedup and membership bounds positive');
assert(queueAppendBatchCountMax <= queueRedrivenRetainedMax, 'one redrive batch fits the redriven bound');
assert(queueCatchUpChunkBytes <= queueStoreChunkBytesMax && queueCatchUpChunkBytes * queueCatchUpChunksPerPull <= connectionWriteQueueBytesMax / 2
  && queueCatchUpChunkBytes + 64 * 1024 <= frameBytesMax && queueCatchUpPullTimeoutMs > 0, 'catch-up chunks fit a frame, a pull half a peer link\'s queue');
assert(queueStoreRecordBytesMax >= queueMessageBytesMax + 24 + 12 + queueHeadersPerMessageMax * 6 + 2 + queueNameBytesMax,
  'a queue record holds a maximal message with its framing');
assert(queueSegmentBytesMax >= queueStoreRecordBytesMax && queueSegmentBytesMax + queueStoreRecordBytesMax < 2 ** 32,
  'a queue segment holds a maximal record and its positions fit a u32');
assert(queueStoreChunkBytesMax >= queueStoreRecordBytesMax && queueStoreChunkBytesMax + 64 * 1024 <= frameBytesMax,
  'an export chunk holds a maximal record and fits a frame with its envelope');
assert(queueStoreReadCacheBytesMax >= queueStoreReadBlockBytes && queueStoreReadCacheBytesMax % queueStoreReadBlockBytes === 0,
  'the read cache holds whole blocks');
assert(queueStoreScanBufferBytes >= queueStoreRecordBytesMax && queueStoreWriteBufferBytes > 0 && queueStoreReadFilesMax >= 1,
  'queue store buffers hold a record');
assert(queueStoreIndexBytesPerMessage === 3 * Uint32Array.BYTES_PER_ELEMENT, 'queue store index: three u32 per message');

// --- queue service (topics in group 0, partitions as Raft groups: server/services/queues) ---
/** Partitions one topic may have; also the stride of partition group ids (topic id x this + index). */
export const queueTopicPartitionsMax = 256;
export const queueTopicPartitionsDefault = 4;
/** Characters of a topic name ([A-Za-z0-9._-]); leaves room for the ".dlq" suffix within queueNameBytesMax. */
export const queueTopicNameCharsMax = 200;
/** Topics group 0 holds (dead-letter topics count). */
export const queueTopicsMax = 1024;
/** Fetches a node holds parked (long polls waiting for messages) before answering TOO_MANY_REQUESTS. */
export const queueParkedFetchesMax = 4096;
/** Longest long poll a fetch may ask for. */
export const queueFetchWaitMsMax = 60_000;
/** Message bytes batched into one partition entry (several publishes of one turn); a larger single publish goes alone. */
export const queueEntryBatchBytesMax = 256 * 1024;
/** Requests (publishes, settles) waiting for the next entry of one partition before TOO_MANY_REQUESTS. */
export const queuePendingRequestsPerPartitionMax = 4096;
/** How often a partition leader checks whether to hand leadership to the partition's preferred (first) replica. */
export const queuePreferredLeaderCheckMs = 1_000;
/** How often a partition leader proposes enforceRetention when its topic has an age limit. */
export const queueRetentionCheckMs = 1_000;
/** Commands one partition entry carries (a turn's publishes and settles of one partition). */
export const queueEntryCommandsMax = 4096;
/**
 * Entries a partition leader's queue service has proposed and not yet seen applied before
 * it holds further requests for the next one: requests arriving meanwhile share one entry.
 */
export const queueEntriesInFlightMax = 1;
/** Locks whose newest fencing token a partition remembers (least recently seen forgotten first). */
export const queueFencingLocksMax = 1024;
/** The pause before a failed append of dead letters to the dead-letter topic is tried again. */
export const queueDeadLetterRetryMs = 200;
/** A dead-letter forward to another node unanswered this long is sent again (to the next replica). */
export const queueDeadLetterForwardTimeoutMs = 2_000;
/**
 * Dead letters a partition's replicated outbox holds until the dead-letter partition took
 * them; while it is full, messages past maxDeliveries are redelivered instead (nothing dropped).
 */
export const queueDeadLetterOutboxMax = 10_000;
/** How often group 0's leader plans partition moves, and each partition leader takes the next step of its move. */
export const queueRebalanceCheckMs = 500;
/** Partition moves under way at once in the whole cluster (rebalancing stays bounded; rebuilding a down node's replicas counts too). */
export const queueMovesInFlightMax = 4;
/** A learner within this many entries of its leader's last index counts as caught up and is promoted to voter. */
export const queueMoveCatchUpEntriesMax = 64;
/** Default of QUEUE_NODE_DOWN_MS: a voter group 0's leader has not heard this long gets its partition replicas rebuilt on spare nodes. */
export const queueNodeDownMsDefault = 300_000;
export const queueNodeDownMsMin = 5_000;
export const queueNodeDownMsMax = 86_400_000;
/** A peer heard from within this long counts as live when a partition leader checks that a membership step keeps a quorum. */
export const queueMovePeerLiveMs = 2_000;
/** Nodes a partition may have left (never placed on again: group ids are not reused on a node); past this the partition no longer moves. */
export const queuePartitionRetiredMax = 64;

assert(queueTopicPartitionsMax >= 1 && queueTopicPartitionsDefault <= queueTopicPartitionsMax, 'topic partitions range');
assert(queueTopicNameCharsMax + '.dlq'.length <= queueNameBytesMax, 'a dead-letter topic name fits the name bound');
/** Topic ids are never reused; group ids (id x queueTopicPartitionsMax + index) must fit a u32, so ids end here. */
export const queueTopicIdMax = Math.floor(0xffff_ffff / queueTopicPartitionsMax) - 1;
assert(queueTopicIdMax > queueTopicsMax && (queueTopicIdMax + 1) * queueTopicPartitionsMax <= 0xffff_ffff, 'partition group ids fit a u32');
assert(queueEntryBatchBytesMax <= queueMessageBytesMax && queueParkedFetchesMax > 0 && queuePendingRequestsPerPartitionMax > 0,
  'queue service bounds');
assert(queueFetchWaitMsMax < queueAckDeadlineMsMax && queueFencingLocksMax > 0, 'queue service waits and fencing bounds');
assert(queueMovesInFlightMax >= 1 && queueMoveCatchUpEntriesMax >= 0 && queueNodeDownMsMin > queueMovePeerLiveMs && queueNodeDownMsDefault >= queueNodeDownMsMin && queueNodeDownMsDefault <= queueNodeDownMsMax
  && queuePartitionRetiredMax >= membersMax, 'partition move bounds');
assert(queuePendingRequestsPerPartitionMax <= queueEntryCommandsMax && queueAckBatchCountMax <= queueEntryCommandsMax,
  'a partition\'s pending requests (and one settle\'s nacks) fit one entry');
assert(appendEntriesBytesMax <= raftBatchBytesMax && queueStoreRecordBytesMax <= raftBatchBytesMax && raftBatchBytesMax * 2 <= frameBytesMax,
  'one append message (a maximal queue message alone included) fits a peer frame with room for its envelope');

// ---- HTTP gateway (server/node/gateway.ts) ----
/**
 * Bytes of one HTTP request body, checked against Content-Length before reading and while
 * reading: a maximal cache value or queue message, base64-encoded (4/3) in JSON, fits.
 */
export const httpBodyBytesMax = 2 * 1024 * 1024;
/**
 * After refusing an oversized body, how long and how many more bytes the gateway keeps reading
 * (and discarding) before it closes: closing with the caller's bytes unread makes the kernel
 * send a reset, which can destroy the 413 before the caller reads it (nginx's lingering close).
 */
export const httpLingerMs = 2_000;
export const httpLingerBytesMax = 16 * 1024 * 1024;
/** Gateway requests being served at once on one node; more answer 429 TOO_MANY_REQUESTS. */
export const httpRequestsInFlightMax = 4096;
/** HTTP consumers (explicit consumer identities, server/node/gateway.ts) one node keeps. */
export const httpConsumersMax = 1024;
/** An HTTP consumer not used (fetch, settle, keepalive) for its TTL is dropped: its deliveries go back to the group. */
export const httpConsumerTtlMsMin = 1_000;
export const httpConsumerTtlMsMax = 10 * 60 * 1000;
export const httpConsumerTtlMsDefault = 30_000;
/** Deliveries one HTTP fetch asks for when it does not say. */
export const httpFetchCountDefault = 16;
/** How long the gateway reuses a topic's partition count to place a keyed publish (refreshed on NOT_FOUND). */
export const httpPartitionMapCacheMs = 1_000;
/** Topics whose partition count the gateway keeps. */
export const httpPartitionMapsMax = 1024;

assert(Math.ceil((cacheValueBytesMax * 4) / 3) + 64 * 1024 <= httpBodyBytesMax && Math.ceil((queueMessageBytesMax * 4) / 3) + 64 * 1024 <= httpBodyBytesMax,
  'a maximal cache value or queue message fits an HTTP body as base64, with room for its JSON');
assert(httpBodyBytesMax < frameBytesMax, 'what an HTTP body carries fits one request frame');
assert(httpConsumerTtlMsMin <= httpConsumerTtlMsDefault && httpConsumerTtlMsDefault <= httpConsumerTtlMsMax, 'consumer TTL default within range');
assert(httpRequestsInFlightMax > 0 && httpConsumersMax > 0 && httpPartitionMapsMax > 0, 'gateway bounds');
assert(httpFetchCountDefault >= 1 && httpFetchCountDefault <= queueFetchCountMax, 'the default fetch size is a valid one');

// ---- status page (server/node/status.ts) ----
/** How often the node samples the figures the status page charts. */
export const statusSampleIntervalMs = 2_000;
/** Samples kept for the charts: 150 x 2 s = the last 5 minutes. */
export const statusHistorySamplesMax = 150;
/** A member that does not answer this node's Status request within this long is shown as not answering. */
export const statusPeerTimeoutMs = 800;
/** Peers' answers are reused for this long, so several open pages cost the members one request each per period. */
export const statusPeerCacheMs = 1_000;
/** Bytes of a static status-page file the node serves; the files are read once at start. */
export const statusFileBytesMax = 256 * 1024;

assert(statusPeerTimeoutMs < statusSampleIntervalMs && statusPeerCacheMs <= statusSampleIntervalMs && statusHistorySamplesMax > 0,
  'a member status request finishes within one sample period, and cached answers are not older than one');
assert(queueFetchBytesMax + queueMessageBytesMax + 256 * 1024 <= frameBytesMax, 'a fetch\'s deliveries, the one past the byte budget and the envelope included, fit one frame');

/** bench:latency's tracing (DSYNC_LATENCY_TRACE): events a WAL worker keeps before writing them out (it has no timers). */
export const latencyTraceBufferedEventsMax = 256;
/** bench:latency's tracing: how often a node's event loop writes its events out. */
export const latencyTraceFlushMs = 500;
