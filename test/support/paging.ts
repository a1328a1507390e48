/**
 * A walk over keyset pages, forward to the end then back to the start through `previous` cursors, with
 * resources added and removed between pages. Shared by the store suite (both stores through the port), the
 * mingo tests of the MongoDB filters and the HTTP paging tests.
 *
 * The contract checked: a page starts exactly where its neighbour ended, in the order of the search. A
 * resource added to or removed from the part of the order not yet visited is seen (or not) like a fresh
 * search would; one added to the part already visited is not seen in that direction. So:
 * - the forward pages, concatenated, are the final result list without the resource added behind the walk;
 * - the backward pages (turned around), followed by the last page, are the final result list exactly.
 */
import { expect } from 'vitest';

export interface WalkPage {
  /** `Type/id` in page order. */
  ids: string[];
  next?: string;
  previous?: string;
}

export interface WalkHarness {
  /** One page: the first one without a cursor. */
  page(cursor?: string): Promise<WalkPage>;
  /** The whole result list, in order (one big page). */
  all(): Promise<string[]>;
  /** Adds a resource that sorts right after `ref` (same sort values, id + 'x'); returns its `Type/id`. */
  cloneAfter(ref: string): Promise<string>;
  remove(ref: string): Promise<void>;
}

export async function walkBothWays(h: WalkHarness, count: number): Promise<void> {
  // Forward.
  const forward: WalkPage[] = [await h.page()];
  expect(forward[0]!.previous, 'the first page has no previous link').toBeUndefined();
  expect(forward[0]!.ids).toHaveLength(count);
  // Between pages 1 and 2: one resource added behind the walk, one removed and one added ahead of it.
  const behind = await h.cloneAfter(forward[0]!.ids[0]!);
  let ref = await h.all();
  const ahead = ref.slice(ref.indexOf(forward[0]!.ids[count - 1]!) + 1);
  const removedAhead = ahead[1]!;
  await h.remove(removedAhead);
  const addedAhead = await h.cloneAfter(ahead[3]!);
  for (let i = 0; forward[forward.length - 1]!.next; i++) {
    if (i > 100) throw new Error('forward paging did not end');
    const prev = forward[forward.length - 1]!;
    const p = await h.page(prev.next);
    expect(p.previous, 'a page reached from a cursor has a previous link').toBeDefined();
    forward.push(p);
  }
  ref = await h.all();
  const seenForward = forward.flatMap((p) => p.ids);
  expect(seenForward).toEqual(ref.filter((r) => r !== behind));
  expect(seenForward).toContain(addedAhead);
  expect(seenForward).not.toContain(removedAhead);
  for (const p of forward.slice(0, -1)) expect(p.ids).toHaveLength(count);

  // Backward, from the last page: first one removed and one added ahead of the walk (earlier in the order).
  const last = forward[forward.length - 1]!;
  expect(last.next).toBeUndefined();
  const start = ref.indexOf(last.ids[0]!);
  expect(start).toBeGreaterThan(6);
  const removedBack = ref[start - 2]!;
  await h.remove(removedBack);
  const addedBack = await h.cloneAfter(ref[start - 5]!);
  const backward: WalkPage[] = [];
  let cursor = last.previous;
  for (let i = 0; cursor; i++) {
    if (i > 100) throw new Error('backward paging did not end');
    const p = await h.page(cursor);
    expect(p.next, 'a page reached backwards has a next link').toBeDefined();
    backward.push(p);
    cursor = p.previous;
  }
  ref = await h.all();
  const seenBack = [...backward].reverse().flatMap((p) => p.ids);
  expect([...seenBack, ...last.ids]).toEqual(ref);
  expect(seenBack).toContain(behind); // added behind the forward walk: ahead of the backward one
  expect(seenBack).toContain(addedBack);
  expect(seenBack).not.toContain(removedBack);
  // Full pages going back, except the one that reached the start.
  for (const p of backward.slice(0, -1)) expect(p.ids).toHaveLength(count);
  // And forward again from a page reached backwards: its next page starts right after it.
  const mid = backward[1]!;
  const again = await h.page(mid.next);
  expect(again.ids).toEqual(ref.slice(ref.indexOf(mid.ids[mid.ids.length - 1]!) + 1).slice(0, count));
}
