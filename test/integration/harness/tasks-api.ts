// containerd's gRPC Tasks API, for what ctr cannot do (ctr 1.6 has no `task update`; ctr always
// sends matching terminal flags in an exec's request and spec) and for exact status codes. The
// definitions are upstream's .proto files as Debian's golang-github-containerd-containerd-dev
// installs them.
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import type { Test } from 'tap';
import type { Containerd } from './containerd';

const GOCODE = '/usr/share/gocode/src';
const TASKS_PROTO = 'github.com/containerd/containerd/api/services/tasks/v1/tasks.proto';
/** How containerd's client marshals a specs.LinuxResources (typeurl: JSON, this type URL). */
const LINUX_RESOURCES_URL = 'types.containerd.io/opencontainers/runtime-spec/1/LinuxResources';
/** How containerd's client marshals a specs.Process (an exec's spec). */
export const PROCESS_SPEC_URL = 'types.containerd.io/opencontainers/runtime-spec/1/Process';

export interface GrpcResult<T> {
  err?: { code: number; details: string };
  res?: T;
}

export interface MetricsResponse {
  metrics: Array<{ id: string; data: { type_url: string; value: Buffer } | null }>;
}

let tasksCtor: grpc.ServiceClientConstructor | undefined;

function tasksClientCtor(): grpc.ServiceClientConstructor {
  if (!tasksCtor) {
    const def = protoLoader.loadSync(TASKS_PROTO, {
      includeDirs: [GOCODE, `${GOCODE}/github.com/gogo/protobuf`, `${GOCODE}/github.com/gogo/protobuf/protobuf`],
      keepCase: true,
      longs: Number,
      enums: String,
      defaults: true,
    });
    const pkg = grpc.loadPackageDefinition(def) as unknown as {
      containerd: { services: { tasks: { v1: { Tasks: grpc.ServiceClientConstructor } } } };
    };
    tasksCtor = pkg.containerd.services.tasks.v1.Tasks;
  }
  return tasksCtor;
}

export class TasksApi {
  private readonly client: grpc.Client;
  private readonly md = new grpc.Metadata();

  constructor(cd: Containerd) {
    this.client = new (tasksClientCtor())(`unix://${cd.address}`, grpc.credentials.createInsecure());
    this.md.set('containerd-namespace', cd.namespace);
  }

  call<T>(method: string, req: object, timeoutMs = 30_000): Promise<GrpcResult<T>> {
    return new Promise(resolve => {
      const fn = (this.client as unknown as Record<string, Function>)[method]!.bind(this.client);
      fn(req, this.md, { deadline: Date.now() + timeoutMs }, (err: grpc.ServiceError | null, res: T) =>
        resolve(err ? { err: { code: err.code, details: err.details } } : { res }),
      );
    });
  }

  update(id: string, resources: object): Promise<GrpcResult<object>> {
    return this.call('Update', { container_id: id, resources: { type_url: LINUX_RESOURCES_URL, value: Buffer.from(JSON.stringify(resources)) } });
  }

  close(): void {
    this.client.close();
  }
}

/** A Tasks API client on cd, closed in t's teardown. */
export function useTasksApi(t: Test, cd: Containerd): TasksApi {
  const api = new TasksApi(cd);
  t.teardown(() => api.close());
  return api;
}
