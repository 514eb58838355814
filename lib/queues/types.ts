// The one contract a fleet's queue meets, whatever the cloud: the planner sends one small
// message per due target (delayed, to spread the load), and a consumer receives, and
// deletes what it handled. On AWS the Lambda event source mapping receives and deletes for
// the function; receive/delete are for the local poller (tests, bench) and for clouds
// whose consumers pull.
import { RotatorError } from "../errors.ts";

/** A message to send: its JSON text and how long the queue keeps it invisible first. */
export interface OutgoingMessage {
  readonly body: string;
  /** 0–900 s (SQS's limit; what the planner spreads a window over). */
  readonly delaySeconds: number;
}

export interface ReceivedMessage {
  readonly id: string;
  readonly body: string;
  /** What delete() takes. */
  readonly receipt: string;
  /** How many times the queue has handed it out, this time included. */
  readonly receiveCount: number;
}

export interface WorkQueue {
  /** The longest delay this queue can hold a message back (SQS 900 s, Azure more, Pub/Sub none): the planner spreads over at most this. */
  readonly maxDelaySeconds: number;
  /** Sends every message (in the service's batches); throws if any could not be sent after retries. */
  send(messages: readonly OutgoingMessage[]): Promise<void>;
  /** Up to `max` messages, waiting up to `waitSeconds` for the first (long polling). */
  receive(max: number, waitSeconds: number): Promise<ReceivedMessage[]>;
  delete(receipts: readonly string[]): Promise<void>;
}

/** The longest delay SQS allows a message (15 minutes). */
export const MAX_DELAY_SECONDS = 900;

/** A queue refused or lost a request (after the retry policy's tries). */
export class QueueError extends RotatorError {
  override name = "QueueError";
}
