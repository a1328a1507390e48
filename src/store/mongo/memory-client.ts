/**
 * An in-memory stand-in for the small part of the MongoDB driver that MongoStore uses, with queries evaluated
 * by mingo (a devDependency): for tests only, so that the store's code runs where no MongoDB server can.
 *
 * Transactions are serialised (one at a time) and work on a copy of the data that replaces it at commit, so
 * rollback and read-your-own-writes behave like a replica set; write conflicts between concurrent
 * transactions cannot happen here (they wait instead). Unique `_id` is enforced (duplicate key error 11000).
 * Not a general fake: only the options MongoStore passes are honoured.
 */
import { Query } from 'mingo';
import { MongoServerError, type MongoClient } from 'mongodb';
import { Mutex } from '../mutex.ts';

type Doc = Record<string, unknown>;
type Data = Map<string, Doc[]>;

interface FindOptions {
  sort?: Doc;
  skip?: number;
  limit?: number;
  projection?: Doc;
  session?: MemorySession;
}

class MemorySession {
  /** The transaction's copy of the data, while a transaction runs. */
  data: Data | undefined;
  private readonly client: MemoryClient;
  constructor(client: MemoryClient) {
    this.client = client;
  }

  async withTransaction<T>(fn: (session: MemorySession) => Promise<T>): Promise<T> {
    return this.client.mutex.run(async () => {
      this.data = new Map([...this.client.data].map(([name, docs]) => [name, docs.map((d) => structuredClone(d))]));
      try {
        const result = await fn(this);
        this.client.data = this.data;
        return result;
      } finally {
        this.data = undefined;
      }
    });
  }

  async endSession(): Promise<void> {}
}

class MemoryCollection {
  private readonly client: MemoryClient;
  private readonly name: string;
  constructor(client: MemoryClient, name: string) {
    this.client = client;
    this.name = name;
  }

  private docs(session?: MemorySession): Doc[] {
    const data = session?.data ?? this.client.data;
    let docs = data.get(this.name);
    if (!docs) data.set(this.name, (docs = []));
    return docs;
  }

  private select(filter: Doc, options: FindOptions = {}): Doc[] {
    let cursor = new Query(filter).find<Doc>(this.docs(options.session), options.projection);
    if (options.sort) cursor = cursor.sort(options.sort);
    if (options.skip) cursor = cursor.skip(options.skip);
    if (options.limit) cursor = cursor.limit(options.limit);
    return cursor.all().map((d) => structuredClone(d));
  }

  async createIndexes(): Promise<string[]> {
    return [];
  }

  async findOne(filter: Doc, options: FindOptions = {}): Promise<Doc | null> {
    return this.select(filter, { ...options, limit: 1 })[0] ?? null;
  }

  find(filter: Doc, options: FindOptions = {}): { toArray(): Promise<Doc[]> } {
    return { toArray: async () => this.select(filter, options) };
  }

  async countDocuments(filter: Doc, options: FindOptions = {}): Promise<number> {
    return this.select(filter, { session: options.session }).length;
  }

  async insertOne(doc: Doc, options: { session?: MemorySession } = {}): Promise<{ acknowledged: true }> {
    const docs = this.docs(options.session);
    if (docs.some((d) => d._id === doc._id)) {
      throw new MongoServerError({ message: `E11000 duplicate key error: ${String(doc._id)}`, code: 11000 });
    }
    docs.push(structuredClone(doc));
    return { acknowledged: true };
  }

  async replaceOne(filter: Doc, doc: Doc, options: { session?: MemorySession } = {}): Promise<{ matchedCount: number }> {
    const docs = this.docs(options.session);
    const query = new Query(filter);
    const i = docs.findIndex((d) => query.test(d));
    if (i < 0) return { matchedCount: 0 };
    docs[i] = { ...structuredClone(doc), _id: docs[i]._id };
    return { matchedCount: 1 };
  }

  async deleteMany(filter: Doc, options: { session?: MemorySession } = {}): Promise<{ deletedCount: number }> {
    const docs = this.docs(options.session);
    const query = new Query(filter);
    const keep = docs.filter((d) => !query.test(d));
    const deletedCount = docs.length - keep.length;
    docs.splice(0, docs.length, ...keep);
    return { deletedCount };
  }
}

class MemoryClient {
  data: Data = new Map();
  readonly mutex = new Mutex();

  async connect(): Promise<this> {
    return this;
  }
  async close(): Promise<void> {}
  startSession(): MemorySession {
    return new MemorySession(this);
  }
  db(): { admin(): { command(cmd: Doc): Promise<Doc> }; collection(name: string): MemoryCollection } {
    return {
      admin: () => ({ command: async () => ({ isWritablePrimary: true, setName: 'memory' }) }),
      collection: (name: string) => new MemoryCollection(this, name),
    };
  }
}

/** A client for `new MongoStore({ uri: 'memory:', client: memoryMongoClient() })`. */
export function memoryMongoClient(): MongoClient {
  return new MemoryClient() as unknown as MongoClient;
}
