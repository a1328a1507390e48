/**
 * An in-memory stand-in for the small part of the MongoDB driver that MongoStore uses, with queries evaluated
 * by mingo (a devDependency): for tests only, so that the store's code runs where no MongoDB server can.
 *
 * Transactions behave like MongoDB's: each one reads a snapshot taken at its start (plus its own writes);
 * writing a document that another transaction has written since the snapshot, or is writing now, fails at
 * once with a WriteConflict (code 112) labelled TransientTransactionError, and `withTransaction` retries the
 * callback, as the driver does. Commit publishes the transaction's writes together; a throw discards them.
 * `_id` is unique (duplicate key error 11000). Only the options MongoStore passes are honoured.
 */
import { Query } from 'mingo';
import { MongoServerError, type MongoClient } from 'mongodb';

type Doc = Record<string, unknown>;
/** collection name -> documents by _id (insertion order kept). */
type Data = Map<string, Map<unknown, Doc>>;

interface FindOptions {
  sort?: Doc;
  skip?: number;
  limit?: number;
  projection?: Doc;
  session?: MemorySession;
}

const clone = (data: Data): Data =>
  new Map([...data].map(([name, docs]) => [name, new Map([...docs].map(([id, d]) => [id, structuredClone(d)]))]));

const docKey = (collection: string, id: unknown): string => `${collection}\u0000${String(id)}`;

class Transaction {
  readonly snapshotSeq: number;
  readonly data: Data;
  /** Keys (collection + _id) this transaction wrote. */
  readonly written = new Set<string>();
  constructor(snapshotSeq: number, data: Data) {
    this.snapshotSeq = snapshotSeq;
    this.data = data;
  }
}

class MemorySession {
  private readonly client: MemoryClient;
  txn: Transaction | undefined;
  /** Number of times a callback was retried after a write conflict (for tests and curiosity). */
  retries = 0;

  constructor(client: MemoryClient) {
    this.client = client;
  }

  async withTransaction<T>(fn: (session: MemorySession) => Promise<T>): Promise<T> {
    for (;;) {
      this.txn = this.client.begin();
      try {
        const result = await fn(this);
        this.client.commit(this.txn);
        return result;
      } catch (err) {
        if (err instanceof MongoServerError && err.hasErrorLabel('TransientTransactionError')) {
          this.retries++;
          await new Promise((resolve) => setTimeout(resolve, 1));
          continue;
        }
        throw err;
      } finally {
        if (this.txn) this.client.release(this.txn);
        this.txn = undefined;
      }
    }
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

  private docs(session?: MemorySession): Map<unknown, Doc> {
    const data = session?.txn?.data ?? this.client.data;
    let docs = data.get(this.name);
    if (!docs) data.set(this.name, (docs = new Map()));
    return docs;
  }

  private select(filter: Doc, options: FindOptions = {}): Doc[] {
    let cursor = new Query(filter).find<Doc>([...this.docs(options.session).values()], options.projection);
    if (options.sort) cursor = cursor.sort(options.sort);
    if (options.skip) cursor = cursor.skip(options.skip);
    if (options.limit) cursor = cursor.limit(options.limit);
    return cursor.all().map((d) => structuredClone(d));
  }

  /** Records a write of `id`, failing like MongoDB when another transaction got there first. */
  private claim(id: unknown, session?: MemorySession): void {
    const key = docKey(this.name, id);
    if (session?.txn) this.client.claim(session.txn, key);
    else this.client.bump(key);
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

  async estimatedDocumentCount(): Promise<number> {
    return this.docs().size;
  }

  async countDocuments(filter: Doc, options: FindOptions = {}): Promise<number> {
    return this.select(filter, { session: options.session }).length;
  }

  async insertOne(doc: Doc, options: { session?: MemorySession } = {}): Promise<{ acknowledged: true }> {
    const docs = this.docs(options.session);
    this.claim(doc._id, options.session);
    if (docs.has(doc._id)) {
      throw new MongoServerError({ message: `E11000 duplicate key error: ${String(doc._id)}`, code: 11000 });
    }
    docs.set(doc._id, structuredClone(doc));
    return { acknowledged: true };
  }

  async replaceOne(filter: Doc, doc: Doc, options: { session?: MemorySession } = {}): Promise<{ matchedCount: number }> {
    const docs = this.docs(options.session);
    const query = new Query(filter);
    const match = [...docs.values()].find((d) => query.test(d));
    if (!match) return { matchedCount: 0 };
    this.claim(match._id, options.session);
    docs.set(match._id, { ...structuredClone(doc), _id: match._id });
    return { matchedCount: 1 };
  }

  /** bulkWrite with `updateOne` + `$set` operations (what MongoStore.reindex sends). */
  async bulkWrite(ops: { updateOne: { filter: Doc; update: { $set: Doc } } }[]): Promise<{ matchedCount: number }> {
    const docs = this.docs();
    let matchedCount = 0;
    for (const { updateOne } of ops) {
      const query = new Query(updateOne.filter);
      const match = [...docs.values()].find((d) => query.test(d));
      if (!match) continue;
      this.claim(match._id);
      docs.set(match._id, { ...match, ...structuredClone(updateOne.update.$set) });
      matchedCount++;
    }
    return { matchedCount };
  }

  async deleteMany(filter: Doc, options: { session?: MemorySession } = {}): Promise<{ deletedCount: number }> {
    const docs = this.docs(options.session);
    const query = new Query(filter);
    let deletedCount = 0;
    for (const d of [...docs.values()]) {
      if (!query.test(d)) continue;
      this.claim(d._id, options.session);
      docs.delete(d._id);
      deletedCount++;
    }
    return { deletedCount };
  }
}

class MemoryClient {
  data: Data = new Map();
  /** Answer `hello` like a standalone mongod (no replica set). */
  standalone = false;
  private seq = 0;
  /** Commit sequence number of the last write of each key. */
  private readonly lastWrite = new Map<string, number>();
  /** Keys written by transactions that have not finished. */
  private readonly claims = new Map<string, Transaction>();

  begin(): Transaction {
    return new Transaction(this.seq, clone(this.data));
  }

  claim(txn: Transaction, key: string): void {
    const holder = this.claims.get(key);
    if ((holder && holder !== txn) || (this.lastWrite.get(key) ?? 0) > txn.snapshotSeq) {
      const err = new MongoServerError({ message: 'WriteConflict error: this operation conflicted with another operation', code: 112 });
      err.addErrorLabel('TransientTransactionError');
      throw err;
    }
    this.claims.set(key, txn);
    txn.written.add(key);
  }

  /** A write outside any transaction. */
  bump(key: string): void {
    this.lastWrite.set(key, ++this.seq);
  }

  commit(txn: Transaction): void {
    const seq = ++this.seq;
    for (const key of txn.written) {
      const [name, id] = key.split('\u0000');
      const source = txn.data.get(name);
      let target = this.data.get(name);
      if (!target) this.data.set(name, (target = new Map()));
      // _id values are strings in MongoStore, so the key's text is the _id.
      const doc = source?.get(id);
      if (doc) target.set(id, doc);
      else target.delete(id);
      this.lastWrite.set(key, seq);
    }
  }

  release(txn: Transaction): void {
    for (const key of txn.written) if (this.claims.get(key) === txn) this.claims.delete(key);
  }

  async connect(): Promise<this> {
    return this;
  }
  async close(): Promise<void> {}
  startSession(): MemorySession {
    return new MemorySession(this);
  }
  db(): { admin(): { command(cmd: Doc): Promise<Doc> }; collection(name: string): MemoryCollection } {
    return {
      admin: () => ({
        command: async () => (this.standalone ? { isWritablePrimary: true } : { isWritablePrimary: true, setName: 'memory' }),
      }),
      collection: (name: string) => new MemoryCollection(this, name),
    };
  }
}

/**
 * A client for `new MongoStore({ uri: 'memory:', client: memoryMongoClient() })`. `standalone: true` makes it
 * answer like a standalone mongod, which has no transactions.
 */
export function memoryMongoClient(options: { standalone?: boolean } = {}): MongoClient {
  const client = new MemoryClient();
  client.standalone = options.standalone ?? false;
  return client as unknown as MongoClient;
}
