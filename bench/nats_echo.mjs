// The raw NATS baseline's other process: answers every request on argv[3] with its own bytes.
import { connect } from '@nats-io/transport-node';

const nc = await connect({ servers: process.argv[2] });
nc.subscribe(process.argv[3], { callback: (err, m) => { if (!err) m.respond(m.data); } });
await nc.flush();
process.stdout.write('ready\n');
process.on('SIGTERM', () => void nc.close().then(() => process.exit(0)));
