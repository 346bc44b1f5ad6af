/**
 * Widget side of the dialer widget bridge.
 *
 * The dialer's agent widget embeds a CRM page in an iframe; the CRM page posts `login`,
 * `logout` and `click_to_call` messages (see `crm-bridge.js`). This module listens for them,
 * accepts only messages from the allowed CRM origins (and, if given, from the CRM's own frame),
 * checks that each has exactly the document's shape, and calls one handler per action.
 * A bad message never throws: it is ignored and, if `onRejected` is given, reported.
 *
 * @example
 * import { listenToCrm } from './widget-receiver.js';
 * const frame = document.querySelector('iframe#crm');
 * const stop = listenToCrm({
 *   allowedOrigins: ['https://crm.example.com'],
 *   source: () => frame.contentWindow,
 *   handlers: {
 *     login: ({ username, password, extension, phone_pass }) => agentLogin(...),
 *     logout: () => agentLogout(),
 *     click_to_call: ({ phone_code, phone_number }) => dial(phone_code, phone_number),
 *   },
 *   onRejected: ({ reason, detail, origin }) => console.warn('ignored', reason, detail, origin),
 * });
 *
 * @module widget-receiver
 */

/**
 * The fields of each action, in the document's order; every value is a non-empty string.
 * @type {Readonly<Record<string, readonly string[]>>}
 */
export const MESSAGE_FIELDS = Object.freeze({
  login: Object.freeze(['action', 'username', 'password', 'extension', 'phone_pass']),
  logout: Object.freeze(['action']),
  click_to_call: Object.freeze(['action', 'phone_code', 'phone_number']),
});

/** Digits-only fields and their greatest length (the dialer's phone fields). */
const DIGIT_FIELDS = Object.freeze({ phone_code: 10, phone_number: 18 });

/**
 * @typedef {object} Rejection
 * @property {'origin' | 'source' | 'shape' | 'unhandled'} reason
 *   `origin`: the sender's origin is not allowed; `source`: the sender is not the CRM frame;
 *   `shape`: not one of the document's messages; `unhandled`: no handler for that action
 * @property {string} detail what was wrong, in words (never a field's value)
 * @property {string} origin the sender's origin
 * @property {string | undefined} action the message's action, when it was a known one
 */

/**
 * Checks a message's shape: a plain object, a known action, exactly that action's fields, each
 * a non-empty string, phone fields digits only.
 *
 * @param {unknown} data
 * @returns {string | null} what is wrong, or null when the message is well formed
 */
export function messageProblem(data) {
  if (typeof data !== 'object' || data === null || Array.isArray(data)) {
    const kind = data === null ? 'null' : Array.isArray(data) ? 'an array' : typeof data;
    return `message is ${kind}, not an object`;
  }
  const proto = Object.getPrototypeOf(data);
  if (proto !== Object.prototype && proto !== null) {
    return 'message is not a plain object';
  }
  const record = /** @type {Record<string, unknown>} */ (data);
  const action = record.action;
  if (typeof action !== 'string' || !Object.hasOwn(MESSAGE_FIELDS, action)) {
    return typeof action === 'string' ? `unknown action "${action.slice(0, 40)}"` : 'no action';
  }
  const expected = MESSAGE_FIELDS[action];
  const keys = Object.keys(record);
  const extra = keys.filter((key) => !expected.includes(key));
  if (extra.length > 0) {
    const names = extra.map((key) => `"${key.slice(0, 40)}"`).join(', ');
    return `${action}: unexpected field(s) ${names}`;
  }
  const missing = expected.filter((key) => !keys.includes(key));
  if (missing.length > 0) {
    return `${action}: missing field(s) ${missing.join(', ')}`;
  }
  for (const key of expected) {
    const value = record[key];
    if (typeof value !== 'string') {
      return `${action}: ${key} must be a string, not ${value === null ? 'null' : typeof value}`;
    }
    if (value.trim() === '') {
      return `${action}: ${key} is empty`;
    }
    if (Object.hasOwn(DIGIT_FIELDS, key)) {
      const max = DIGIT_FIELDS[/** @type {keyof typeof DIGIT_FIELDS} */ (key)];
      if (!/^[0-9]+$/.test(value) || value.length > max) {
        return `${action}: ${key} must be 1 to ${max} digits`;
      }
    }
  }
  return null;
}

/**
 * @typedef {{action: 'login', username: string, password: string, extension: string,
 *            phone_pass: string}} LoginMessage
 * @typedef {{action: 'logout'}} LogoutMessage
 * @typedef {{action: 'click_to_call', phone_code: string, phone_number: string}}
 *   ClickToCallMessage
 * @typedef {object} Handlers
 * @property {(message: LoginMessage, event: MessageEvent) => void} [login]
 * @property {(message: LogoutMessage, event: MessageEvent) => void} [logout]
 * @property {(message: ClickToCallMessage, event: MessageEvent) => void} [click_to_call]
 */

/**
 * Checks one allowed origin: exact, http(s), no path, no wildcard.
 *
 * @param {unknown} value
 * @returns {string}
 */
function checkOrigin(value) {
  let parsed = null;
  try {
    parsed = typeof value === 'string' ? new URL(value) : null;
  } catch {
    parsed = null;
  }
  if (!parsed || !['http:', 'https:'].includes(parsed.protocol) || parsed.origin !== value) {
    throw new TypeError(
      `allowedOrigins: ${JSON.stringify(value)} is not an exact http(s) origin ` +
        'such as "https://crm.example.com" (no path, no trailing slash, no "*")',
    );
  }
  return value;
}

/**
 * Starts listening for the CRM page's messages.
 *
 * Configuration mistakes (no allowed origin, a `'*'`, an unknown handler name) throw at once;
 * messages that fail a check are ignored and passed to `onRejected`.
 *
 * @param {object} options
 * @param {readonly string[]} options.allowedOrigins exact CRM origins,
 *   e.g. `['https://crm.example.com']`
 * @param {Handlers} options.handlers one function per action; a message whose action has none
 *   is rejected
 * @param {(rejection: Rejection, event: MessageEvent) => void} [options.onRejected]
 * @param {Window | (() => Window | null | undefined)} [options.source]
 *   the CRM frame's window (or a function returning it, e.g. `() => iframe.contentWindow`);
 *   when given, messages from any other window are rejected even from an allowed origin
 * @param {EventTarget} [options.target] where to listen; by default the widget's window
 * @returns {() => void} stops listening (safe to call more than once)
 */
export function listenToCrm({
  allowedOrigins,
  handlers,
  onRejected = () => {},
  source,
  target = globalThis,
} = {}) {
  if (!Array.isArray(allowedOrigins) || allowedOrigins.length === 0) {
    throw new TypeError('allowedOrigins must be a non-empty array of exact CRM origins');
  }
  const origins = new Set(allowedOrigins.map(checkOrigin));
  if (typeof handlers !== 'object' || handlers === null) {
    throw new TypeError('handlers must be an object: {login, logout, click_to_call}');
  }
  for (const [name, handler] of Object.entries(handlers)) {
    if (!Object.hasOwn(MESSAGE_FIELDS, name)) {
      throw new TypeError(
        `handlers: unknown action "${name}"; expected login, logout, click_to_call`,
      );
    }
    if (typeof handler !== 'function') {
      throw new TypeError(`handlers.${name} must be a function`);
    }
  }
  if (typeof onRejected !== 'function') {
    throw new TypeError('onRejected must be a function');
  }
  const expectedSource = typeof source === 'function' ? source : () => source;

  /** @param {MessageEvent} event */
  const onMessage = (event) => {
    const { origin, data } = event;
    const action = typeof data?.action === 'string' && Object.hasOwn(MESSAGE_FIELDS, data.action)
      ? data.action
      : undefined;
    /** @param {Rejection['reason']} reason @param {string} detail */
    const reject = (reason, detail) => onRejected({ reason, detail, origin, action }, event);

    if (!origins.has(origin)) {
      reject('origin', `origin "${origin}" is not an allowed CRM origin`);
      return;
    }
    if (source !== undefined && event.source !== expectedSource()) {
      reject('source', 'message did not come from the CRM frame');
      return;
    }
    const problem = messageProblem(data);
    if (problem !== null) {
      reject('shape', problem);
      return;
    }
    const handler = handlers[data.action];
    if (typeof handler !== 'function') {
      reject('unhandled', `no handler for "${data.action}"`);
      return;
    }
    const message = Object.fromEntries(MESSAGE_FIELDS[data.action].map((key) => [key, data[key]]));
    handler(Object.freeze(message), event);
  };

  target.addEventListener('message', onMessage);
  return () => target.removeEventListener('message', onMessage);
}
