/**
 * CRM side of the dialer widget bridge.
 *
 * A CRM page shown inside the dialer's agent widget tells the widget, with `postMessage`, when
 * the agent logs in or out and when they click a number to call. This module builds exactly the
 * messages the dialer document describes, and sends them to one configured widget origin only:
 * the login message carries passwords, so it must never be posted to `'*'`.
 *
 * @example
 * import { createDialerBridge } from './crm-bridge.js';
 * const dialer = createDialerBridge({ widgetOrigin: 'https://dialer.example.com' });
 * dialer.login({ username: 'agent7', password, extension: '1007', phonePass });
 * dialer.clickToCall({ phoneCode: '1', phoneNumber: '555 010 0123' });
 * dialer.logout();
 *
 * @module crm-bridge
 */

/** The dialer's phone fields hold digits only, at most this many. */
const MAX_DIGITS = { phoneCode: 10, phoneNumber: 18 };

/** Separators a CRM may show inside a number; they are removed before the digits are checked. */
const SEPARATORS = /[\s().-]/g;

/** A problem with the bridge's configuration or with the values given to one of its calls. */
export class DialerBridgeError extends Error {
  /**
   * @param {string} field the option or argument at fault, e.g. `'phoneNumber'`
   * @param {string} message what is wrong and what is expected; never contains the value itself
   */
  constructor(field, message) {
    super(message);
    this.name = 'DialerBridgeError';
    /** @type {string} */
    this.field = field;
  }
}

/**
 * Checks that `value` is one exact origin such as `https://dialer.example.com`: a scheme, a host
 * and an optional port, with no path, no trailing slash and no wildcard.
 *
 * @param {unknown} value
 * @returns {string}
 */
function checkOrigin(value) {
  const field = 'widgetOrigin';
  if (typeof value !== 'string' || value === '') {
    throw new DialerBridgeError(
      field,
      'widgetOrigin is required, e.g. "https://dialer.example.com"',
    );
  }
  if (value === '*' || value === '/') {
    throw new DialerBridgeError(
      field,
      `widgetOrigin must name the widget's exact origin, not "${value}": ` +
        'the login message carries passwords',
    );
  }
  let parsed;
  try {
    parsed = new URL(value);
  } catch {
    throw new DialerBridgeError(field, `widgetOrigin "${value}" is not a URL origin`);
  }
  if (!['http:', 'https:'].includes(parsed.protocol) || parsed.origin !== value) {
    throw new DialerBridgeError(
      field,
      `widgetOrigin "${value}" must be an exact http(s) origin with no path or trailing slash` +
        (parsed.origin !== 'null' ? `, e.g. "${parsed.origin}"` : ''),
    );
  }
  return value;
}

/**
 * Rejects fields that the call does not know, so that a misspelt name (`phone_pass` for
 * `phonePass`) fails loudly instead of being dropped.
 *
 * @param {string} call
 * @param {unknown} args
 * @param {readonly string[]} known
 * @returns {Record<string, unknown>}
 */
function checkArgs(call, args, known) {
  if (typeof args !== 'object' || args === null || Array.isArray(args)) {
    throw new DialerBridgeError('arguments', `${call}() takes one object: {${known.join(', ')}}`);
  }
  for (const key of Object.keys(args)) {
    if (!known.includes(key)) {
      throw new DialerBridgeError(
        key,
        `${call}() got an unknown field "${key}"; it takes {${known.join(', ')}}`,
      );
    }
  }
  return /** @type {Record<string, unknown>} */ (args);
}

/**
 * @param {Record<string, unknown>} args
 * @param {string} field
 * @returns {string} the value, unchanged
 */
function requiredText(args, field) {
  const value = args[field];
  if (value === undefined || value === null || value === '') {
    throw new DialerBridgeError(field, `${field} is required`);
  }
  if (typeof value !== 'string') {
    throw new DialerBridgeError(field, `${field} must be a string, not ${typeof value}`);
  }
  if (value.trim() === '') {
    throw new DialerBridgeError(field, `${field} must not be blank`);
  }
  return value;
}

/**
 * @param {Record<string, unknown>} args
 * @param {'phoneCode' | 'phoneNumber'} field
 * @returns {string} the digits, separators removed (and a leading "+" on a phone code); a
 *   whole number is taken as its decimal digits
 */
function phoneDigits(args, field) {
  const value = args[field];
  const text =
    Number.isSafeInteger(value) && value >= 0 ? String(value) : requiredText(args, field);
  let digits = text.replace(SEPARATORS, '');
  if (field === 'phoneCode' && digits.startsWith('+')) {
    digits = digits.slice(1);
  }
  if (!/^[0-9]+$/.test(digits)) {
    throw new DialerBridgeError(
      field,
      `${field} must contain digits only (spaces, dots, dashes and brackets are allowed)`,
    );
  }
  if (digits.length > MAX_DIGITS[field]) {
    throw new DialerBridgeError(field, `${field} must have at most ${MAX_DIGITS[field]} digits`);
  }
  return digits;
}

/**
 * @typedef {object} LoginArgs
 * @property {string} username
 * @property {string} password
 * @property {string} extension
 * @property {string} phonePass
 */

/**
 * @typedef {object} ClickToCallArgs
 * @property {string | number} phoneCode e.g. `'1'` or `'+44'`
 * @property {string | number} phoneNumber e.g. `'(555) 010-0123'`
 */

/**
 * @typedef {object} DialerBridge
 * @property {(args: LoginArgs) => void} login Logs the agent in to the widget: posts
 *   `{action: 'login', username, password, extension, phone_pass}`.
 * @property {() => void} logout Logs the agent out of the widget: posts `{action: 'logout'}`.
 * @property {(args: ClickToCallArgs) => void} clickToCall Asks the widget to dial: posts
 *   `{action: 'click_to_call', phone_code, phone_number}` (digits only).
 */

/**
 * Creates the bridge a CRM page uses to talk to the dialer widget that embeds it.
 *
 * Every call checks its arguments first and throws a {@link DialerBridgeError} (naming the
 * field) before anything is posted. Messages go to `widgetOrigin` only: if the page around the
 * CRM is not that origin, the browser drops them.
 *
 * @param {object} options
 * @param {string} options.widgetOrigin the widget's exact origin, e.g. `https://dialer.example.com`
 * @param {{postMessage: (message: unknown, targetOrigin: string) => void}} [options.target]
 *   the widget's window; by default the page's parent
 * @returns {Readonly<DialerBridge>}
 */
export function createDialerBridge({ widgetOrigin, target = globalThis.parent } = {}) {
  const origin = checkOrigin(widgetOrigin);
  if (!target || typeof target.postMessage !== 'function') {
    throw new DialerBridgeError('target', 'target must be a window (by default, window.parent)');
  }

  /** @param {object} message */
  const post = (message) => target.postMessage(message, origin);

  return Object.freeze({
    login(args) {
      const given = checkArgs('login', args, ['username', 'password', 'extension', 'phonePass']);
      const message = {
        action: 'login',
        username: requiredText(given, 'username'),
        password: requiredText(given, 'password'),
        extension: requiredText(given, 'extension'),
        phone_pass: requiredText(given, 'phonePass'),
      };
      post(message);
    },

    logout() {
      post({ action: 'logout' });
    },

    clickToCall(args) {
      const given = checkArgs('clickToCall', args, ['phoneCode', 'phoneNumber']);
      const message = {
        action: 'click_to_call',
        phone_code: phoneDigits(given, 'phoneCode'),
        phone_number: phoneDigits(given, 'phoneNumber'),
      };
      post(message);
    },
  });
}
