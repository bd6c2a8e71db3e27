/**
 * @module Edits to the body's bytes (replace a value, remove an object member, insert text), applied
 * while the line is cut into pieces: the body is never copied or re-encoded to change it.
 *
 * Transforms add edits in any order; {@link EditList.pieces} sorts them once, drops edits inside a
 * removed member, and removes exactly the commas that keep the object valid when members go.
 */

const COMMA = 0x2c;

/** One change to `[start, end)` of the body: its new bytes, or nothing. */
type Edit = {
  start: number;
  end: number;
  bytes: Uint8Array | undefined;
  /** The range is a whole object member (key through value); its comma is the list's to settle. */
  member: boolean;
};

/** Edits to one body, gathered by the transforms and applied by the encoders. */
export class EditList {
  #edits: Edit[] = [];
  #settled = true;

  /** How many edits were added. */
  get size(): number {
    return this.#edits.length;
  }

  /** Replaces the value at `[start, end)` with `bytes`. */
  replace(start: number, end: number, bytes: Uint8Array): void {
    this.#add({ start, end, bytes, member: false });
  }

  /** Inserts `bytes` before the byte at `at`. */
  insert(at: number, bytes: Uint8Array): void {
    this.#add({ start: at, end: at, bytes, member: false });
  }

  /**
   * Removes the object member whose key token starts at `keyStart` and whose value ends at
   * `valueEnd`, with one neighbouring comma so that the object stays valid.
   */
  removeMember(keyStart: number, valueEnd: number): void {
    this.#add({ start: keyStart, end: valueEnd, bytes: undefined, member: true });
  }

  #add(edit: Edit): void {
    this.#edits.push(edit);
    this.#settled = false;
  }

  /**
   * Orders the edits, merges member removals that sit next to each other, gives each removal run
   * one comma (the one after it, or before it when it ends its object), and drops edits that fall
   * inside a removal.
   */
  #settle(bytes: Uint8Array): void {
    if (this.#settled) return;
    this.#settled = true;
    const sorted = this.#edits.sort((a, b) => a.start - b.start || a.end - b.end);
    const out: Edit[] = [];
    for (const e of sorted) {
      const last = out[out.length - 1];
      if (last?.member && e.start < last.end) continue; // inside a removed member
      if (last?.member && e.member && e.start === last.end + 1 && bytes[last.end] === COMMA) {
        last.end = e.end; // neighbours: one run, the comma between them goes with it
        continue;
      }
      out.push({ ...e });
    }
    for (const e of out) {
      if (!e.member) continue;
      if (bytes[e.end] === COMMA) e.end++;
      else if (bytes[e.start - 1] === COMMA) e.start--;
    }
    this.#edits = out;
  }

  /**
   * Appends to `out` the pieces of `bytes[from, to)` with the edits that fall inside that range
   * applied (an insertion at `to` included): views of `bytes` between them, and the edits' own bytes.
   */
  pieces(bytes: Uint8Array, from: number, to: number, out: Uint8Array[]): void {
    this.#settle(bytes);
    let at = from;
    for (const e of this.#edits) {
      if (e.start > to) break;
      if (e.start < from || e.end > to) continue; // outside, or straddling: not this range's
      if (e.start > at) out.push(bytes.subarray(at, e.start));
      if (e.bytes !== undefined && e.bytes.length > 0) out.push(e.bytes);
      at = e.end;
    }
    if (to > at) out.push(bytes.subarray(at, to));
  }
}
