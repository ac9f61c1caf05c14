/** The worker protocol's codec (docs/protocol.md): frames, binary parts, values, messages. */
export { ArgsError, encodeArgs, formatPath, type EncodeArgsOptions, type EncodedArgs } from './args.js';
export { ITEM_SIZE, KIND_OF_DTYPE, KIND_OF_TAG, type BinaryPart, type PartDescriptor, type PartKind, type PathStep } from './binary.js';
export { FrameDecoder, FrameError, HEADER_BYTES, encodeFrame, encodeFrameParts, type FrameErrorKind, type FrameSink } from './frame.js';
export {
  ERR_KINDS,
  PROTOCOL_VERSION,
  commandInfoProblem,
  validateWorkerMessage,
  type CallMessage,
  type CommandInfo,
  type CommandKind,
  type EndMessage,
  type ErrKind,
  type ErrMessage,
  type HelloMessage,
  type HeartbeatMessage,
  type InitErrorMessage,
  type ItemMessage,
  type OkMessage,
  type SnapMessage,
  type WorkerMessage,
} from './messages.js';
export { NDArray, type DType, type NDArrayData } from './ndarray.js';
