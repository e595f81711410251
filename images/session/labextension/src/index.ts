/**
 * The Jupyter portal's session extension for JupyterLab.
 *
 * It reads two page-config options, written into every lab page by the session's server
 * settings: `jupyterPortalUrl` (the portal's public URL, same origin as the lab) and
 * `jupyterPortalSessionId` (this session's id). Without both it does nothing at all, except
 * that the connection-lost handler it provides falls back to JupyterLab's own dialog.
 *
 * With both it:
 * - shows the time left in the status bar (`#jp-PortalSession-status`), polling the portal's
 *   `GET /session/status/` every 30 s (every 5 s in the last 2 minutes or while stopping);
 * - warns once when fewer than `warning_minutes` are left;
 * - saves every open document 60 s and 15 s before the end, and when the session is stopping;
 * - offers "Stop session" and "Back to the portal" (status bar click, command palette);
 * - shows a modal "Your session ended" dialog when the session is over, instead of
 *   JupyterLab's "Server Connection Error".
 */
import {
  ConnectionLost,
  IConnectionLost,
  JupyterFrontEnd,
  JupyterFrontEndPlugin
} from '@jupyterlab/application';
import {
  Dialog,
  ICommandPalette,
  Notification,
  showDialog,
  showErrorMessage
} from '@jupyterlab/apputils';
import { PageConfig } from '@jupyterlab/coreutils';
import { IStatusBar } from '@jupyterlab/statusbar';
import { Widget } from '@lumino/widgets';

const PLUGIN_PREFIX = '@jupyter-portal/session-status';

/** DOM id and class of the status bar item (tests rely on them). */
const STATUS_ITEM_ID = 'jp-PortalSession-status';
/** Class of the "Your session ended" dialog node (tests rely on it). */
const ENDED_DIALOG_CLASS = 'jp-PortalSession-ended';

const CommandIDs = {
  stop: 'jupyter-portal:stop-session',
  back: 'jupyter-portal:back-to-portal'
};

/** JupyterLab's command that saves every open document with unsaved changes. */
const SAVE_ALL_COMMAND = 'docmanager:save-all';

const POLL_NORMAL_MS = 30_000;
const POLL_FAST_MS = 5_000;
/** Below this many seconds left: fast polling and the time shown in seconds. */
const FINAL_SECONDS = 120;
/** Save all documents when this many seconds are left (each once). */
const SAVE_AT_SECONDS = [60, 15];
/** Used when the status answer has no warning_minutes (the portal's default). */
const DEFAULT_WARNING_MINUTES = 15;
const FETCH_TIMEOUT_MS = 15_000;
/** After the "server cannot be reached" message is closed, stay quiet this long. */
const CONNECTION_ERROR_QUIET_MS = 30_000;

const LOG_PREFIX = '[session-status]';

/** The portal's `GET /session/status/` answer (only the fields used here). */
interface IPortalStatus {
  id?: string;
  state?: string;
  state_label?: string;
  active?: boolean;
  remaining_seconds?: number | null;
  expires_at?: string | null;
  reason?: string;
  reason_label?: string;
  warning_minutes?: number | null;
  message?: string;
  now?: string;
  code?: string;
  detail?: string;
}

type StatusAnswer =
  | {
      kind: 'status';
      status: IPortalStatus;
      /** Server time minus browser time, in ms (null when the answer gave no clock). */
      offsetMs: number | null;
      /** Browser time (Date.now()) when the answer arrived. */
      receivedAt: number;
    }
  | { kind: 'no_session' }
  | { kind: 'error'; error: string };

/** "1 h 23 min", "23 min"; in the last 2 minutes "1 min 35 s", "35 s". */
function formatRemaining(seconds: number): string {
  const s = Math.max(0, Math.floor(seconds));
  if (s <= FINAL_SECONDS) {
    const minutes = Math.floor(s / 60);
    const secs = s % 60;
    return minutes > 0 ? `${minutes} min ${secs} s` : `${secs} s`;
  }
  const hours = Math.floor(s / 3600);
  const minutes = Math.floor((s % 3600) / 60);
  return hours > 0 ? `${hours} h ${minutes} min` : `${minutes} min`;
}

function readCookie(name: string): string {
  for (const part of document.cookie.split(';')) {
    const [key, ...rest] = part.trim().split('=');
    if (key === name) {
      return decodeURIComponent(rest.join('='));
    }
  }
  return '';
}

/** Talks to the portal (same origin, the portal's cookies). */
class PortalClient {
  constructor(readonly portalUrl: string) {}

  get sessionPageUrl(): string {
    return `${this.portalUrl}/session/`;
  }

  async status(): Promise<StatusAnswer> {
    const controller = new AbortController();
    const timer = window.setTimeout(() => controller.abort(), FETCH_TIMEOUT_MS);
    const sentAt = Date.now();
    let response: Response;
    try {
      response = await fetch(`${this.portalUrl}/session/status/`, {
        method: 'GET',
        credentials: 'same-origin',
        cache: 'no-store',
        headers: { Accept: 'application/json' },
        signal: controller.signal
      });
    } catch (error) {
      return { kind: 'error', error: String(error) };
    } finally {
      window.clearTimeout(timer);
    }
    const receivedAt = Date.now();
    const contentType = response.headers.get('Content-Type') || '';
    if (!contentType.includes('json')) {
      // For instance the portal's sign-in page after its login expired: no news.
      return {
        kind: 'error',
        error: `HTTP ${response.status}, not JSON (${contentType})`
      };
    }
    let body: IPortalStatus;
    try {
      body = (await response.json()) as IPortalStatus;
    } catch (error) {
      return { kind: 'error', error: `bad JSON: ${error}` };
    }
    if (response.status === 404 && body.code === 'no_session') {
      return { kind: 'no_session' };
    }
    if (!response.ok) {
      return { kind: 'error', error: `HTTP ${response.status}` };
    }
    // The portal's clock: its `now` field if it sends one, else the Date header (whole
    // seconds, so take the middle of that second), against the middle of the round trip.
    let serverNow = body.now ? Date.parse(body.now) : NaN;
    if (isNaN(serverNow)) {
      const dateHeader = response.headers.get('Date');
      serverNow = dateHeader ? Date.parse(dateHeader) + 500 : NaN;
    }
    const offsetMs = isNaN(serverNow)
      ? null
      : serverNow - (sentAt + receivedAt) / 2;
    return { kind: 'status', status: body, offsetMs, receivedAt };
  }

  /** POST /session/stop/ with Django's CSRF token; true when the portal took it. */
  async stop(): Promise<boolean> {
    let token = readCookie('csrftoken');
    if (!token) {
      // The portal sets its CSRF cookie with any page that has a form: fetch one.
      try {
        await fetch(this.sessionPageUrl, { credentials: 'same-origin' });
      } catch (error) {
        console.warn(LOG_PREFIX, 'could not fetch the session page', error);
      }
      token = readCookie('csrftoken');
    }
    try {
      const response = await fetch(`${this.portalUrl}/session/stop/`, {
        method: 'POST',
        credentials: 'same-origin',
        headers: { 'X-CSRFToken': token, Accept: 'application/json' }
      });
      if (!response.ok) {
        console.error(LOG_PREFIX, 'stopping the session failed', response.status);
      }
      return response.ok;
    } catch (error) {
      console.error(LOG_PREFIX, 'stopping the session failed', error);
      return false;
    }
  }
}

/** The status bar item: "Session: 1 h 23 min left". */
class StatusItem extends Widget {
  constructor(onActivate: () => void) {
    super();
    this.id = STATUS_ITEM_ID;
    this.addClass(STATUS_ITEM_ID);
    this.addClass('jp-StatusBar-GroupItem');
    this.node.setAttribute('role', 'button');
    this.node.tabIndex = 0;
    this.node.title = 'Your session: time left. Click to stop it or go back to the portal.';
    this._text = document.createElement('span');
    this._text.className = 'jp-StatusBar-TextItem jp-PortalSession-text';
    this.node.appendChild(this._text);
    this.node.addEventListener('click', () => onActivate());
    this.node.addEventListener('keydown', event => {
      if (event.key === 'Enter' || event.key === ' ') {
        event.preventDefault();
        onActivate();
      }
    });
    this.display('Session: …', null, '', false);
  }

  display(text: string, remaining: number | null, state: string, warn: boolean): void {
    if (this._text.textContent !== text) {
      this._text.textContent = text;
    }
    if (remaining === null) {
      this.node.removeAttribute('data-remaining-seconds');
    } else {
      this.node.setAttribute('data-remaining-seconds', String(Math.floor(remaining)));
    }
    this.node.setAttribute('data-state', state);
    this.toggleClass('jp-mod-warning', warn);
    this.toggleClass('jp-mod-ended', state === 'ended');
  }

  private _text: HTMLSpanElement;
}

/** Everything the extension does for one configured lab page. */
class SessionWatcher {
  constructor(
    private readonly app: JupyterFrontEnd,
    readonly client: PortalClient,
    readonly sessionId: string
  ) {}

  get ended(): boolean {
    return this._ended;
  }

  attachStatusItem(item: StatusItem): void {
    this._item = item;
    this._render();
  }

  /** Start polling and the one-second clock (once). */
  start(): void {
    if (this._started || this._ended) {
      return;
    }
    this._started = true;
    this._tickTimer = window.setInterval(() => this._tick(), 1000);
    document.addEventListener('visibilitychange', this._onVisible);
    void this._poll();
  }

  /** Seconds left, computed locally from the last status answer. */
  remainingSeconds(): number | null {
    if (this._expiresAt !== null) {
      const serverNow = Date.now() + (this._offsetMs ?? 0);
      return Math.max(0, (this._expiresAt - serverNow) / 1000);
    }
    const status = this._status;
    if (status && typeof status.remaining_seconds === 'number') {
      const elapsed = (Date.now() - this._receivedAt) / 1000;
      return Math.max(0, status.remaining_seconds - elapsed);
    }
    return null;
  }

  /**
   * Ask the portal now (shared with a poll already under way). True when the session is
   * known to have ended (the ended dialog is then shown).
   */
  async checkNow(): Promise<boolean> {
    if (!this._inflight) {
      this._inflight = this.client.status().then(answer => {
        this._inflight = null;
        this._apply(answer);
        return answer;
      });
    }
    await this._inflight;
    return this._ended;
  }

  /** True while the portal says the session is on its way out (stopping or at its end). */
  get windingDown(): boolean {
    const remaining = this.remainingSeconds();
    return this._status?.state === 'stopping' || (remaining !== null && remaining <= 0);
  }

  backToPortal(): void {
    window.location.assign(this.client.sessionPageUrl);
  }

  /** Confirm, save every document, ask the portal to stop, then show the ended dialog. */
  async stopSession(): Promise<void> {
    if (this._ended) {
      return this.showEnded(this._endedLabel);
    }
    const confirm = await showDialog({
      title: 'Stop your session?',
      body:
        'Open documents are saved first; running kernels and terminals stop. ' +
        'Everything in your home folder is kept.',
      buttons: [
        Dialog.cancelButton({ label: 'Cancel' }),
        Dialog.warnButton({ label: 'Stop session' })
      ]
    });
    if (!confirm.button.accept) {
      return;
    }
    await this.saveAll('stopping the session');
    const stopped = await this.client.stop();
    if (!stopped) {
      await showErrorMessage(
        'Could not stop the session',
        'The portal did not accept the request. Go back to the portal and stop the session there.'
      );
      return;
    }
    // The portal now has the reason ("stopped by the user"); fall back to that wording.
    let label = 'stopped by the user';
    const answer = await this.client.status();
    if (answer.kind === 'status' && answer.status.reason_label) {
      label = answer.status.reason_label;
    }
    this._markEnded(label);
  }

  async saveAll(why: string): Promise<void> {
    if (!this.app.commands.hasCommand(SAVE_ALL_COMMAND)) {
      console.warn(LOG_PREFIX, `cannot save (${why}): no ${SAVE_ALL_COMMAND} command`);
      return;
    }
    console.info(LOG_PREFIX, `saving all documents (${why})`);
    try {
      await this.app.commands.execute(SAVE_ALL_COMMAND);
      console.info(LOG_PREFIX, `saved all documents (${why})`);
    } catch (error) {
      console.error(LOG_PREFIX, `saving all documents failed (${why})`, error);
    }
  }

  /**
   * The modal "Your session ended" dialog, shown until the person leaves: its only button
   * goes back to the portal, and it has no close button (Lab behind it cannot work any more).
   */
  async showEnded(label: string): Promise<void> {
    if (this._endedShown) {
      return;
    }
    this._endedShown = true;
    // Dialogs left open (a "save?" question, the stop confirmation) cannot work any more.
    Dialog.flush();
    for (;;) {
      const body = document.createElement('div');
      const sentence = document.createElement('p');
      sentence.className = 'jp-PortalSession-endedReason';
      sentence.textContent = label
        ? `Your session ended: ${label}`
        : 'Your session ended.';
      const note = document.createElement('p');
      note.className = 'jp-PortalSession-endedNote';
      note.textContent = 'Files saved in your home folder are kept.';
      body.append(sentence, note);
      const dialog = new Dialog({
        title: 'Your session ended',
        body: new Widget({ node: body }),
        buttons: [Dialog.okButton({ label: 'Back to the portal' })],
        hasClose: false
      });
      dialog.addClass(ENDED_DIALOG_CLASS);
      await dialog.launch();
      dialog.dispose();
      this.backToPortal();
      // If the browser stays (the person cancelled a "leave page?" question), ask again.
      await new Promise(resolve => window.setTimeout(resolve, 1500));
    }
  }

  private _markEnded(label: string): void {
    if (this._ended) {
      return;
    }
    this._ended = true;
    this._endedLabel = label;
    console.info(LOG_PREFIX, `session ended: ${label || '(no reason given)'}`);
    window.clearInterval(this._tickTimer);
    window.clearTimeout(this._pollTimer);
    document.removeEventListener('visibilitychange', this._onVisible);
    if (this._warningId) {
      Notification.dismiss(this._warningId);
    }
    this._render();
    void this.showEnded(label);
  }

  private _apply(answer: StatusAnswer): void {
    if (this._ended) {
      return;
    }
    if (answer.kind === 'error') {
      console.warn(LOG_PREFIX, 'no session status from the portal:', answer.error);
      return;
    }
    if (answer.kind === 'no_session') {
      this._markEnded('');
      return;
    }
    const status = answer.status;
    if (status.id !== this.sessionId) {
      // The portal's current session is another one: ours is over, reason unknown here.
      this._markEnded('');
      return;
    }
    if (status.active === false) {
      this._markEnded(status.reason_label || '');
      return;
    }
    this._status = status;
    this._receivedAt = answer.receivedAt;
    const expires = status.expires_at ? Date.parse(status.expires_at) : NaN;
    this._expiresAt = isNaN(expires) ? null : expires;
    if (answer.offsetMs !== null) {
      this._offsetMs = answer.offsetMs;
    }
    if (status.state === 'stopping' && !this._savedStopping) {
      this._savedStopping = true;
      void this.saveAll('the session is stopping');
    }
    this._tick();
  }

  private async _poll(): Promise<void> {
    window.clearTimeout(this._pollTimer);
    await this.checkNow();
    if (this._ended) {
      return;
    }
    const remaining = this.remainingSeconds();
    const fast =
      this._status?.state === 'stopping' ||
      (remaining !== null && remaining <= FINAL_SECONDS);
    this._pollTimer = window.setTimeout(
      () => void this._poll(),
      fast ? POLL_FAST_MS : POLL_NORMAL_MS
    );
  }

  private _onVisible = (): void => {
    if (document.visibilityState === 'visible' && !this._ended) {
      void this._poll();
    }
  };

  private _tick(): void {
    if (this._ended) {
      return;
    }
    const remaining = this.remainingSeconds();
    if (remaining !== null) {
      this._checkWarning(remaining);
      this._checkSave(remaining);
    }
    this._render();
  }

  private _warningSeconds(): number {
    const minutes = this._status?.warning_minutes;
    return (typeof minutes === 'number' ? minutes : DEFAULT_WARNING_MINUTES) * 60;
  }

  private _checkWarning(remaining: number): void {
    const threshold = this._warningSeconds();
    if (this._warned || threshold <= 0 || remaining >= threshold) {
      return;
    }
    this._warned = true;
    const minutes = Math.max(1, Math.ceil(remaining / 60));
    const unit = minutes === 1 ? 'minute' : 'minutes';
    this._warningId = Notification.warning(
      `Your session ends in ${minutes} ${unit}. ` +
        'Save your work: everything in your home folder is kept.',
      {
        autoClose: false,
        actions: [
          {
            label: 'Stop session',
            displayType: 'warn',
            callback: () => void this.stopSession()
          },
          {
            label: 'Back to the portal',
            callback: () => this.backToPortal()
          }
        ]
      }
    );
  }

  private _checkSave(remaining: number): void {
    // Lowest threshold first, so that a page that opens with 10 s left saves once.
    const due = SAVE_AT_SECONDS.filter(
      seconds => remaining <= seconds && !this._savedAt.has(seconds)
    );
    if (due.length === 0) {
      return;
    }
    due.forEach(seconds => this._savedAt.add(seconds));
    void this.saveAll(`${Math.ceil(remaining)} s left`);
  }

  private _render(): void {
    const item = this._item;
    if (!item) {
      return;
    }
    if (this._ended) {
      item.display('Session ended', 0, 'ended', true);
      return;
    }
    const status = this._status;
    if (!status) {
      item.display('Session: …', null, '', false);
      return;
    }
    const state = status.state || '';
    const remaining = this.remainingSeconds();
    if (state === 'stopping') {
      item.display('Session: stopping…', remaining, state, true);
      return;
    }
    if (remaining === null) {
      item.display(`Session: ${status.state_label || state}`, null, state, false);
      return;
    }
    item.display(
      `Session: ${formatRemaining(remaining)} left`,
      remaining,
      state,
      remaining < this._warningSeconds()
    );
  }

  private _item: StatusItem | null = null;
  private _status: IPortalStatus | null = null;
  private _receivedAt = 0;
  private _expiresAt: number | null = null;
  private _offsetMs: number | null = null;
  private _inflight: Promise<StatusAnswer> | null = null;
  private _started = false;
  private _ended = false;
  private _endedLabel = '';
  private _endedShown = false;
  private _warned = false;
  private _warningId = '';
  private _savedStopping = false;
  private _savedAt = new Set<number>();
  private _tickTimer = 0;
  private _pollTimer = 0;
}

/** The page's one watcher, or null when the page has no portal configuration. */
let watcher: SessionWatcher | null | undefined;

function getWatcher(app: JupyterFrontEnd): SessionWatcher | null {
  if (watcher === undefined) {
    const portalUrl = PageConfig.getOption('jupyterPortalUrl').replace(/\/+$/, '');
    const sessionId = PageConfig.getOption('jupyterPortalSessionId');
    watcher =
      portalUrl && sessionId
        ? new SessionWatcher(app, new PortalClient(portalUrl), sessionId)
        : null;
  }
  return watcher;
}

/** Status bar item, warning, saves before the end, commands. */
const statusPlugin: JupyterFrontEndPlugin<void> = {
  id: `${PLUGIN_PREFIX}:status`,
  description: "Shows the time left in the portal's session and what happens at its end.",
  autoStart: true,
  optional: [IStatusBar, ICommandPalette],
  activate: (
    app: JupyterFrontEnd,
    statusBar: IStatusBar | null,
    palette: ICommandPalette | null
  ) => {
    const session = getWatcher(app);
    if (!session) {
      return;
    }
    app.commands.addCommand(CommandIDs.stop, {
      label: 'Stop Session…',
      caption: 'Save all documents and stop your session',
      execute: () => session.stopSession()
    });
    app.commands.addCommand(CommandIDs.back, {
      label: 'Back to the Portal',
      caption: "Open the portal's session page in this tab",
      execute: () => session.backToPortal()
    });
    if (palette) {
      palette.addItem({ command: CommandIDs.stop, category: 'Session' });
      palette.addItem({ command: CommandIDs.back, category: 'Session' });
    }
    if (statusBar) {
      const item = new StatusItem(() => void openSessionDialog(session));
      session.attachStatusItem(item);
      statusBar.registerStatusItem(`${PLUGIN_PREFIX}:status`, {
        item,
        align: 'left',
        rank: 1000
      });
    }
    void app.restored.then(() => session.start());
  }
};

/** What a click on the status bar item opens. */
async function openSessionDialog(session: SessionWatcher): Promise<void> {
  if (session.ended) {
    return session.showEnded('');
  }
  const remaining = session.remainingSeconds();
  const body =
    (remaining === null ? '' : `Time left: ${formatRemaining(remaining)}. `) +
    'Everything in your home folder is kept when the session ends.';
  const back = 'Back to the portal';
  const stop = 'Stop session';
  const result = await showDialog({
    title: 'Your session',
    body,
    buttons: [
      Dialog.cancelButton({ label: 'Cancel' }),
      Dialog.okButton({ label: back }),
      Dialog.warnButton({ label: stop })
    ]
  });
  if (result.button.label === back) {
    session.backToPortal();
  } else if (result.button.label === stop) {
    await session.stopSession();
  }
}

/** JupyterLab's "Server Connection Error", told apart from "your session ended". */
const connectionLostPlugin: JupyterFrontEndPlugin<IConnectionLost> = {
  id: `${PLUGIN_PREFIX}:connection-lost`,
  description: "Replaces 'Server Connection Error' with 'Your session ended' when it has.",
  autoStart: true,
  provides: IConnectionLost,
  activate: (app: JupyterFrontEnd): IConnectionLost => {
    let pending: Promise<void> | null = null;
    let quietUntil = 0;
    return (manager, err, translator) => {
      const session = getWatcher(app);
      if (!session) {
        return ConnectionLost(manager, err, translator);
      }
      if (session.ended || pending || Date.now() < quietUntil) {
        return pending ?? Promise.resolve();
      }
      pending = (async () => {
        console.info(LOG_PREFIX, 'server connection lost: asking the portal about the session');
        if (await session.checkNow()) {
          return; // the ended dialog is up
        }
        if (session.windingDown) {
          // Stopping or at its end: the ended dialog follows within seconds.
          console.info(LOG_PREFIX, 'server unreachable while the session winds down');
          return;
        }
        await showErrorMessage(
          'Server connection error',
          "Your session's server cannot be reached. JupyterLab keeps trying to " +
            'reconnect. Check your network connection; if this lasts, go back to the ' +
            'portal to see what happened to your session.'
        );
        quietUntil = Date.now() + CONNECTION_ERROR_QUIET_MS;
      })()
        .catch(error => console.error(LOG_PREFIX, error))
        .finally(() => {
          pending = null;
        });
      return pending;
    };
  }
};

export default [statusPlugin, connectionLostPlugin];
