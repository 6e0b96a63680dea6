// Integration test harness: private containerd instances, busybox fixtures, ctr helpers,
// `ctr events` parsing, leak checks. See docs/testing.md.
export * from './proc';
export * from './fixtures';
export * from './containerd';
export * from './versions';
export * from './events';
export * from './leaks';
export * from './scenario';
export * from './ordering';
export * from './stdio';
export * from './cri';
export * from './direct';
export * from './tasks-api';
export * from './introspection';
export * from './tasks';
