/** The HTTP server of `pyfleet serve`: calls, metrics, health and the live dashboard. */
export { createServer, isLoopback, type PyfleetServer, type ServerOptions, type ServedPool } from './app.js';
export { serve, type ServeOptions, type Serving } from './serve.js';
export { LiveState, type LiveOptions, type LiveSnapshot, type LiveWorker } from './live.js';
export { statusOf, errorBody } from './http-errors.js';
