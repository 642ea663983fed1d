/** The platform on this engine: start, stop, status, and removal (tests' teardown). */
export { startPlatform, type StartOptions, type StartResult, type StartedComponent } from './start.js';
export { stopPlatform, type StopResult } from './stop.js';
export { platformStatus, type PlatformStatus, type ComponentStatus, type PlatformState, type ApiHealth } from './status.js';
export { removePlatform, type RemoveOptions } from './remove.js';
export { buildRuntimeConfig, platformEndpoint, serviceName, networkName } from './config.js';
export { reloadRouter } from './swarm.js';
export {
  chooseDataDir,
  defaultDataDir,
  readSettings,
  rememberedDataDir,
  type PlatformSettings,
  type ExternalParts,
} from './settings.js';
