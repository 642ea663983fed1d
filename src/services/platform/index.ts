/** The platform on this engine: start, stop, status, and removal (tests' teardown). */
export { startPlatform, type StartOptions, type StartResult, type StartedComponent } from './start.js';
export { stopPlatform, type StopResult } from './stop.js';
export { platformStatus, type PlatformStatus, type ComponentStatus, type PlatformState, type ApiHealth } from './status.js';
export { removePlatform, type RemoveOptions } from './remove.js';
export { buildRuntimeConfig, platformEndpoint, serviceName, networkName } from './config.js';
export { reloadRouter } from './swarm.js';
export { renderRouterConfig, routerValues, ROUTER_APPS_DIR } from './router-config.js';
/** Labels: services of a platform carry `divio.platform=NAME` (stop, start and removal find apps by it). */
export { LABEL_PLATFORM, LABEL_COMPONENT, COMPONENTS, type Component } from './specs.js';
export {
  chooseDataDir,
  dataPaths,
  defaultDataDir,
  readSettings,
  rememberedDataDir,
  type PlatformSettings,
  type ExternalParts,
} from './settings.js';
