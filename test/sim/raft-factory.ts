// The one place the simulator names the real Raft implementation; everything
// else takes a RaftFactory so canaries can wrap it.

import { Raft } from '../../core/raft/raft.js';
import type { RaftFactory } from './cluster.js';

export const realRaft: RaftFactory = (config, persisted) => new Raft(config, persisted);
