/** A FIFO async mutex: `run` executes tasks one at a time, in call order. */
export class Mutex {
  private tail: Promise<unknown> = Promise.resolve();

  run<T>(task: () => Promise<T>): Promise<T> {
    const result = this.tail.then(task, task);
    // Keep the chain alive whatever the task's outcome; callers see the real result.
    this.tail = result.then(
      () => undefined,
      () => undefined,
    );
    return result;
  }
}
