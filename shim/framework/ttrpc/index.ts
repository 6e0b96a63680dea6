// ttrpc: containerd's lightweight RPC over unix sockets. See docs/ttrpc-protocol.md.
export { Code, TtrpcError, codeName, isTtrpcError, statusOf } from './codes';
export {
  FrameReader,
  HEADER_LENGTH,
  MESSAGE_LENGTH_MAX,
  MessageType,
  decodeHeader,
  encodeFrame,
  encodeHeader,
  type FrameEvent,
  type FrameHeader,
} from './frame';
export { TtrpcServer, type CallContext, type Handler, type Logger, type ServerOptions } from './server';
export { TtrpcClient, type CallOptions, type ConnectOptions } from './client';
export { TO_OBJECT_OPTIONS, bindService, serviceName, typedCall, type TypedHandler } from './service';
