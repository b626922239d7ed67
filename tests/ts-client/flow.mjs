#!/usr/bin/env node
// Ferry compatibility driver: exercises a Ferry server through the OFFICIAL
// Octopus Deploy TypeScript client (@octopusdeploy/api-client, pinned 3.11.0),
// using only the library's public API, the way the GitHub actions do.
//
// Output contract (stdout):
//   STAGE <name> ok <detail>      one line per stage
//   STAGE <name> FAIL <error>
//   RAWLOG <line>                 the task's raw log (stage task-read)
//   RESULT {json}                 last line: summary object
// Exit code: 0 only when every stage passed, 1 otherwise.
// Every HTTP exchange made by the client is traced to stderr as `HTTP ...`.
// See README.md for the environment variables.

import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import api from "@octopusdeploy/api-client";

const {
  Client,
  SpaceRepository,
  resolveSpaceId,
  ProjectRepository,
  EnvironmentRepository,
  EnvironmentV2Repository,
  LifecycleRepository,
  DeploymentProcessRepository,
  ReleaseRepository,
  DeploymentRepository,
  ServerTaskWaiter,
  SpaceServerTaskRepository,
  TaskState,
  ZipPackageBuilder,
  PackageRepository,
  BuildInformationRepository,
  OverwriteMode,
  TenantRepository,
} = api;

const env = process.env;
const cfg = {
  url: env.FERRY_URL,
  apiKey: env.FERRY_API_KEY,
  space: env.FERRY_SPACE || "Default",
  project: env.FERRY_PROJECT,
  environment: env.FERRY_ENVIRONMENT,
  releaseVersion: env.FERRY_RELEASE_VERSION,
  flow: (env.FERRY_FLOW || "deploy").toLowerCase(),
  packageId: env.FERRY_PACKAGE_ID || "FerryTsPush",
  packageVersion: env.FERRY_PACKAGE_VERSION || "1.0.0",
  channel: env.FERRY_CHANNEL,
  tenants: (env.FERRY_TENANTS || "").split(",").map((x) => x.trim()).filter(Boolean),
  tenantTags: (env.FERRY_TENANT_TAGS || "").split(",").map((x) => x.trim()).filter(Boolean),
  expectTenants: (env.FERRY_EXPECT_TENANTS || "").split(",").map((x) => x.trim()).filter(Boolean),
  pollMs: Number(env.FERRY_POLL_MS || 500),
  waitTimeoutMs: Number(env.FERRY_WAIT_TIMEOUT_MS || 120_000),
  overallTimeoutMs: Number(env.FERRY_FLOW_TIMEOUT_MS || 300_000),
};

const USER_AGENT_APP = "FerryCompat (ts-client;flow;v1)";
const KNOWN_STATES = new Set(Object.values(TaskState ?? {
  Canceled: "Canceled", Cancelling: "Cancelling", Executing: "Executing", Failed: "Failed",
  Queued: "Queued", Success: "Success", TimedOut: "TimedOut",
}));
const COMPLETED_STATES = new Set(["Success", "Failed", "Canceled", "TimedOut"]);

const summary = { flow: cfg.flow, ok: false, stages: [] };
let anyFailed = false;
let finished = false;

// ---------------------------------------------------------------- helpers

function oneLine(s, max = 300) {
  const t = String(s ?? "").replace(/\s*\n\s*/g, " | ").trim();
  return t.length > max ? t.slice(0, max) + "..." : t;
}

/** Render any thrown value (OctopusError, axios network error, Error) on one line. */
function describeError(e) {
  if (e === null || e === undefined) return "unknown error (null)";
  if (typeof e !== "object") return oneLine(e);
  const parts = [];
  if (e.StatusCode !== undefined) parts.push(`StatusCode=${e.StatusCode}`);
  if (e.code !== undefined && e.code !== e.StatusCode) parts.push(`code=${e.code}`);
  let msg = e.ErrorMessage || e.message || "";
  // Node's happy-eyeballs connect errors are AggregateErrors with an empty message.
  if (!msg && Array.isArray(e.errors) && e.errors.length) {
    msg = e.errors.map((x) => x?.message || String(x)).join("; ");
  }
  if (!msg && e.cause) msg = e.cause.message || String(e.cause);
  parts.push(msg ? oneLine(msg) : `(${e.constructor?.name || "error"} without message)`);
  return parts.join(" ");
}

function check(cond, message) {
  if (!cond) throw new Error(message);
}

function recordStage(name, ok, detail) {
  summary.stages.push({ name, ok, detail });
  if (!ok) anyFailed = true;
  console.log(`STAGE ${name} ${ok ? "ok" : "FAIL"} ${oneLine(detail, 400)}`);
}

/**
 * Run one stage. `fn` returns `{ value, detail }` (or a detail string).
 * Returns { ok, value }. If a prerequisite failed the stage is reported as FAIL (skipped).
 */
async function stage(name, fn, prereqs = []) {
  const missing = prereqs.filter((p) => !p.ok).map((p) => p.name);
  if (missing.length) {
    recordStage(name, false, `skipped: prerequisite stage(s) failed: ${missing.join(", ")}`);
    return { name, ok: false };
  }
  try {
    const r = await fn();
    const detail = typeof r === "string" ? r : r?.detail ?? "";
    recordStage(name, true, detail);
    return { name, ok: true, value: typeof r === "object" ? r?.value : undefined };
  } catch (e) {
    recordStage(name, false, describeError(e));
    return { name, ok: false, error: e };
  }
}

function finish(extra = {}) {
  if (finished) return;
  finished = true;
  Object.assign(summary, extra);
  summary.ok = !anyFailed && summary.stages.length > 0;
  summary.failedStages = summary.stages.filter((s) => !s.ok).map((s) => s.name);
  summary.firstFailure = summary.stages.find((s) => !s.ok) ?? null;
  const code = summary.ok ? 0 : 1;
  process.exitCode = code;
  // Exit once RESULT is flushed: do not wait for keep-alive sockets or a waiter's timers.
  process.stdout.write(`RESULT ${JSON.stringify(summary)}\n`, () => process.exit(code));
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// Overall watchdog: the client has no request timeout, so a hung server must not hang the test.
const watchdog = setTimeout(() => {
  recordStage("watchdog", false, `flow did not finish within ${cfg.overallTimeoutMs} ms (FERRY_FLOW_TIMEOUT_MS)`);
  finish();
}, cfg.overallTimeoutMs);
watchdog.unref();

// Error responses seen by the client (also those the waiter swallows, e.g. a failing cancel).
const httpErrors = [];
// Successful responses seen by the client (the push flow reads their statuses: the client
// itself treats every 2xx alike).
const httpResponses = [];

// ---------------------------------------------------------------- stages shared by both flows

async function stageConfig() {
  return stage("config", async () => {
    const required = cfg.flow === "push"
      ? ["FERRY_URL", "FERRY_API_KEY"]
      : ["FERRY_URL", "FERRY_API_KEY", "FERRY_PROJECT", "FERRY_ENVIRONMENT", "FERRY_RELEASE_VERSION"];
    const missing = required.filter((k) => !env[k]);
    check(missing.length === 0, `missing environment variable(s): ${missing.join(", ")}`);
    check(["deploy", "cancel", "push", "tenanted"].includes(cfg.flow), `FERRY_FLOW must be "deploy", "cancel", "push" or "tenanted", got "${cfg.flow}"`);
    check(/^https?:\/\//.test(cfg.url), `FERRY_URL must start with http:// or https://, got "${cfg.url}"`);
    return `flow=${cfg.flow} url=${cfg.url} space=${cfg.space} project=${cfg.project} environment=${cfg.environment} version=${cfg.releaseVersion}`;
  });
}

/** a. Client.create (GET /api) + server information. */
async function stageConnect(prereq) {
  return stage("connect", async () => {
    const client = await Client.create({
      instanceURL: cfg.url,
      apiKey: cfg.apiKey,
      userAgentApp: USER_AGENT_APP,
    });
    client.subscribeToResponses("ferry-trace", (d) => {
      httpResponses.push(d);
      process.stderr.write(`HTTP ${d.method} ${d.url} -> ${d.statusCode}\n`);
    });
    client.subscribeToErrors("ferry-trace", (d) => {
      httpErrors.push(d);
      process.stderr.write(`HTTP ${d.method} ${d.url} -> ERROR ${d.statusCode} ${oneLine(d.errorMessage, 200)}\n`);
    });
    const info = await client.getServerInformation();
    check(info && typeof info.version === "string", `root document has no string Version (got ${JSON.stringify(info?.version)})`);
    // 3.11.0 calls semver.lt(Version, "2022.3.5512") before executions-API calls: a non-semver Version throws TypeError.
    const m = /^(\d+)\.(\d+)\.(\d+)(?:[-+].*)?$/.exec(info.version);
    check(m && !/(^|\.)0\d/.test(info.version.split(/[-+]/)[0]), `Version "${info.version}" is not valid semver (no leading zeros)`);
    const [maj, min, pat] = m.slice(1).map(Number);
    const atLeast = maj > 2022 || (maj === 2022 && (min > 3 || (min === 3 && pat >= 5512)));
    check(atLeast, `Version "${info.version}" is below 2022.3.5512: the client refuses executions-API calls`);
    check(
      /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i.test(String(info.installationId)),
      `InstallationId "${info.installationId}" is not a UUID`,
    );
    summary.server = { version: info.version, installationId: info.installationId };
    return { value: client, detail: `Version=${info.version} InstallationId=${info.installationId}` };
  }, [prereq]);
}

/** b. Space resolution: SpaceRepository.list + resolveSpaceId (the implicit per-call lookup). */
async function stageSpace(client, prereq) {
  return stage("space", async () => {
    const spaces = await new SpaceRepository(client).list({ partialName: cfg.space, skip: 0, take: 30 });
    check(Array.isArray(spaces?.Items), "GET /api/spaces returned no Items array");
    check(typeof spaces.TotalResults === "number", "GET /api/spaces returned no numeric TotalResults");
    const match = spaces.Items.find((s) => s.Name === cfg.space);
    check(match, `space "${cfg.space}" not in SpaceRepository.list Items (${spaces.Items.map((s) => s.Name).join(", ")})`);
    const resolved = await resolveSpaceId(client, cfg.space);
    check(resolved === match.Id, `resolveSpaceId gave ${resolved} but list gave ${match.Id}`);
    summary.spaceId = resolved;
    return { value: resolved, detail: `${cfg.space} -> ${resolved} (TotalResults=${spaces.TotalResults})` };
  }, [prereq]);
}

/** c. Project by name: list({partialName}) then get(Id). */
async function stageProject(client, prereq) {
  return stage("project", async () => {
    const repo = new ProjectRepository(client, cfg.space);
    const list = await repo.list({ partialName: cfg.project, skip: 0, take: 30 });
    check(Array.isArray(list?.Items), "project list returned no Items array");
    const hit = list.Items.find((p) => p.Name === cfg.project);
    check(hit, `project "${cfg.project}" not found by partialName (got: ${list.Items.map((p) => p.Name).join(", ") || "none"})`);
    const project = await repo.get(hit.Id);
    check(project?.Id === hit.Id, `ProjectRepository.get(${hit.Id}) returned Id ${project?.Id}`);
    check(project.Name === cfg.project, `ProjectRepository.get returned Name ${project.Name}`);
    check(project.LifecycleId, "project has no LifecycleId");
    summary.projectId = project.Id;
    summary.lifecycleId = project.LifecycleId;
    return { value: project, detail: `${project.Name} -> ${project.Id} LifecycleId=${project.LifecycleId}` };
  }, [prereq]);
}

// ---------------------------------------------------------------- deploy flow

async function deployFlow(client, connect, space) {
  const project = await stageProject(client, space);

  const environment = await stage("environment", async () => {
    const list = await new EnvironmentRepository(client, cfg.space).list({ partialName: cfg.environment, skip: 0, take: 30 });
    check(Array.isArray(list?.Items), "environment list returned no Items array");
    const hit = list.Items.find((e) => e.Name === cfg.environment)
      ?? list.Items.find((e) => String(e.Name).toLowerCase() === cfg.environment.toLowerCase());
    check(hit, `environment "${cfg.environment}" not found by partialName (got: ${list.Items.map((e) => e.Name).join(", ") || "none"})`);
    summary.environmentId = hit.Id;
    return { value: hit, detail: `${hit.Name} -> ${hit.Id}` };
  }, [space]);

  await stage("lifecycle", async () => {
    const id = project.value.LifecycleId;
    const list = await new LifecycleRepository(client, cfg.space).list({ ids: [id], take: 1 });
    check(Array.isArray(list?.Items), "lifecycle list returned no Items array");
    const hit = list.Items.find((l) => l.Id === id);
    check(hit, `LifecycleRepository.list({ids:[${id}]}) did not return ${id} (got ${list.Items.map((l) => l.Id).join(", ") || "none"})`);
    return `${hit.Id} "${hit.Name}" phases=${Array.isArray(hit.Phases) ? hit.Phases.length : "n/a"}`;
  }, [project]);

  await stage("deployment-process", async () => {
    const proc = await new DeploymentProcessRepository(client, cfg.space).get(project.value);
    check(proc && typeof proc === "object", "no deployment process returned");
    check(proc.ProjectId === undefined || proc.ProjectId === project.value.Id, `process ProjectId ${proc.ProjectId} != ${project.value.Id}`);
    check(Array.isArray(proc.Steps), "deployment process has no Steps array");
    return `${proc.Id} steps=${proc.Steps.length} version=${proc.Version}`;
  }, [project]);

  // d. Release creation via the executions API.
  const releases = new ReleaseRepository(client, cfg.space);
  const release = await stage("release-create", async () => {
    const r = await releases.create({ spaceName: cfg.space, ProjectName: cfg.project, ReleaseVersion: cfg.releaseVersion });
    check(r?.ReleaseId, `response has no ReleaseId: ${JSON.stringify(r)}`);
    check(r.ReleaseVersion === cfg.releaseVersion, `ReleaseVersion ${r.ReleaseVersion} != requested ${cfg.releaseVersion}`);
    summary.releaseId = r.ReleaseId;
    summary.releaseVersion = r.ReleaseVersion;
    return { value: r, detail: `${r.ReleaseId} ${r.ReleaseVersion}` };
  }, [connect, space]);

  await stage("release-recreate", async () => {
    const r = await releases.create({
      spaceName: cfg.space, ProjectName: cfg.project, ReleaseVersion: cfg.releaseVersion, IgnoreIfAlreadyExists: true,
    });
    check(r?.ReleaseId === release.value.ReleaseId, `IgnoreIfAlreadyExists returned ${r?.ReleaseId}, expected ${release.value.ReleaseId}`);
    check(r.ReleaseVersion === cfg.releaseVersion, `IgnoreIfAlreadyExists returned version ${r.ReleaseVersion}`);
    return `IgnoreIfAlreadyExists -> same ${r.ReleaseId}`;
  }, [release]);

  await stage("release-read", async () => {
    const id = release.value.ReleaseId;
    const r = await releases.get(id);
    check(r?.Id === id, `ReleaseRepository.get(${id}) returned Id ${r?.Id}`);
    check(r.Version === cfg.releaseVersion, `release Version ${r.Version} != ${cfg.releaseVersion}`);
    check(r.ProjectId === project.value.Id, `release ProjectId ${r.ProjectId} != ${project.value.Id}`);
    const list = await releases.listForProject(project.value.Id);
    check(Array.isArray(list?.Items), "listForProject returned no Items array");
    check(list.Items.some((x) => x.Id === id), `listForProject(${project.value.Id}) does not contain ${id} (${list.Items.length} items)`);
    return `get ${r.Id} Version=${r.Version} ChannelId=${r.ChannelId}; listForProject has ${list.Items.length}/${list.TotalResults}`;
  }, [release, project]);

  // e. Deploy (untenanted), then deploy-release-action's follow-up joins.
  const deployments = new DeploymentRepository(client, cfg.space);
  const deploy = await stage("deploy", async () => {
    const r = await deployments.create({
      spaceName: cfg.space,
      ProjectName: cfg.project,
      ReleaseVersion: cfg.releaseVersion,
      EnvironmentNames: [cfg.environment],
      Variables: {},
    });
    const tasks = r?.DeploymentServerTasks ?? [];
    check(tasks.length === 1, `expected 1 DeploymentServerTasks entry for 1 environment, got ${tasks.length}`);
    check(tasks[0].DeploymentId && tasks[0].ServerTaskId, `entry lacks DeploymentId/ServerTaskId: ${JSON.stringify(tasks[0])}`);
    summary.deploymentId = tasks[0].DeploymentId;
    summary.serverTaskId = tasks[0].ServerTaskId;
    return { value: tasks, detail: tasks.map((t) => `${t.DeploymentId}/${t.ServerTaskId}`).join(", ") };
  }, [release]);

  await stage("deploy-join", async () => {
    const tasks = deploy.value;
    const deploymentIds = tasks.map((t) => t.DeploymentId);
    const deps = await deployments.list({ ids: deploymentIds, take: deploymentIds.length });
    check(Array.isArray(deps?.Items), "deployments list returned no Items array");
    check(deps.Items.length === deploymentIds.length,
      `deployments list ids=${deploymentIds.join(",")} returned ${deps.Items.length} item(s): ${deps.Items.map((d) => d.Id).join(", ")}`);
    const envIds = [...new Set(deps.Items.map((d) => d.EnvironmentId))];
    check(envIds.every(Boolean), "a listed deployment has no EnvironmentId");

    let envItems;
    let via = "environments/v2";
    try {
      const v2 = await new EnvironmentV2Repository(client, cfg.space).list({ ids: envIds, skip: 0, take: envIds.length });
      envItems = v2?.Items ?? [];
      if (envItems.length === 0) via = "environments (v2 returned empty Items)";
    } catch (e) {
      if (e?.StatusCode !== 404) throw new Error(`environments/v2 failed with a non-404 error (the action would fail): ${describeError(e)}`);
      via = "environments (v2 404)";
      envItems = [];
    }
    if (envItems.length === 0) {
      const v1 = await new EnvironmentRepository(client, cfg.space).list({ ids: envIds, take: envIds.length });
      envItems = v1?.Items ?? [];
    }
    summary.environmentLookup = via;

    // Same join as deploy-release-action: ServerTaskId -> Deployment.TaskId -> Environment.Id.
    const joined = tasks.map((t) => {
      const dep = deps.Items.filter((d) => d.TaskId === t.ServerTaskId)[0];
      check(dep, `no listed deployment has TaskId ${t.ServerTaskId} (got ${deps.Items.map((d) => `${d.Id}:${d.TaskId}`).join(", ")})`);
      check(dep.Id === t.DeploymentId, `deployment with TaskId ${t.ServerTaskId} is ${dep.Id}, create said ${t.DeploymentId}`);
      const envRes = envItems.filter((e) => e.Id === dep.EnvironmentId)[0];
      check(envRes, `environment ${dep.EnvironmentId} not in ${via} list`);
      check(envRes.Name === cfg.environment, `joined environment Name ${envRes.Name} != ${cfg.environment}`);
      if (release.ok) check(dep.ReleaseId === release.value.ReleaseId, `deployment ReleaseId ${dep.ReleaseId} != ${release.value.ReleaseId}`);
      return `${t.ServerTaskId}->${dep.Id}->${envRes.Id}(${envRes.Name})`;
    });
    return `${joined.join(", ")} via ${via}`;
  }, [deploy]);

  // f. Wait for the deployment task(s).
  const wait = await stage("wait", async () => {
    const ids = deploy.value.map((t) => t.ServerTaskId);
    const seen = [];
    const waiter = new ServerTaskWaiter(client, cfg.space, { maxRetries: 3, retryBackoffMs: 250 });
    const done = await waiter.waitForServerTasksToComplete(ids, cfg.pollMs, cfg.waitTimeoutMs, (t) => {
      check(KNOWN_STATES.has(t.State), `task ${t.Id} has unknown State "${t.State}"`);
      if (seen[seen.length - 1] !== t.State) seen.push(t.State);
    });
    summary.observedStates = seen;
    // Without cancelOnTimeout the 3.11.0 waiter returns only the completed tasks on timeout, it does not throw.
    check(done.length === ids.length, `timed out after ${cfg.waitTimeoutMs} ms; states seen: ${seen.join(">")}`);
    for (const t of done) {
      summary.taskState = t.State;
      check(t.IsCompleted === true, `task ${t.Id} IsCompleted=${t.IsCompleted}`);
      check(t.State === "Success", `task ${t.Id} State=${t.State} ErrorMessage=${oneLine(t.ErrorMessage)}`);
      check(t.FinishedSuccessfully === true, `task ${t.Id} State=Success but FinishedSuccessfully=${t.FinishedSuccessfully}`);
    }
    return `${done.map((t) => `${t.Id}=${t.State}`).join(", ")} (seen ${seen.join(">")})`;
  }, [deploy]);

  // g. Read the task: getById, getDetails, getRaw.
  await stage("task-read", async () => {
    const id = deploy.value[0].ServerTaskId;
    const repo = new SpaceServerTaskRepository(client, cfg.space);
    const task = await repo.getById(id);
    check(task?.Id === id, `getById(${id}) returned Id ${task?.Id}`);
    check(task.State === "Success" && task.IsCompleted === true, `getById State=${task.State} IsCompleted=${task.IsCompleted}`);
    const details = await repo.getDetails(id);
    check(details?.Task?.Id === id, `getDetails(${id}).Task.Id is ${details?.Task?.Id}`);
    check(Array.isArray(details.ActivityLogs), "getDetails has no ActivityLogs array");
    const raw = await repo.getRaw(id);
    check(typeof raw === "string", `getRaw returned ${typeof raw}, expected a string`);
    check(raw.trim().length > 0, "getRaw returned an empty log");
    summary.rawLog = raw;
    for (const line of raw.replace(/\r?\n$/, "").split(/\r?\n/)) console.log(`RAWLOG ${line}`);
    return `State=${task.State} ActivityLogs=${details.ActivityLogs.length} rawLog=${raw.length} chars`;
  }, [deploy, wait]);

  return project;
}

// ---------------------------------------------------------------- error contract (both flows)

async function stageErrorContract(client, prereq) {
  return stage("error-contract", async () => {
    const bogus = `ferry-no-such-project-${process.pid}-${Date.now()}`;
    let err;
    try {
      await new ReleaseRepository(client, cfg.space).create({ spaceName: cfg.space, ProjectName: bogus, ReleaseVersion: cfg.releaseVersion });
    } catch (e) {
      err = e;
    }
    check(err, `creating a release for unknown project "${bogus}" did not throw`);
    summary.errorStatus = err.StatusCode;
    summary.errorMessage = err.ErrorMessage ?? err.message;
    check(typeof err.StatusCode === "number" && err.StatusCode >= 400 && err.StatusCode < 500,
      `expected a 4xx StatusCode, got ${err.StatusCode} (${describeError(err)})`);
    const msg = String(err.ErrorMessage ?? "");
    check(msg.trim().length > 0 && String(err.message ?? "").trim().length > 0, "ErrorMessage/message is empty");
    check(!msg.startsWith("undefined"), `error body has Errors but no ErrorMessage: "${oneLine(msg)}"`);
    check(!/^Request failed with status code/.test(msg), `error body is not JSON with ErrorMessage/Errors: "${oneLine(msg)}"`);
    return `StatusCode=${err.StatusCode} ErrorMessage=${oneLine(msg, 200)}`;
  }, [prereq]);
}

// ---------------------------------------------------------------- cancel flow

async function cancelFlow(client, connect, space) {
  const releases = new ReleaseRepository(client, cfg.space);
  const release = await stage("release-create", async () => {
    const r = await releases.create({ spaceName: cfg.space, ProjectName: cfg.project, ReleaseVersion: cfg.releaseVersion });
    check(r?.ReleaseId, `response has no ReleaseId: ${JSON.stringify(r)}`);
    summary.releaseId = r.ReleaseId;
    summary.releaseVersion = r.ReleaseVersion;
    return { value: r, detail: `${r.ReleaseId} ${r.ReleaseVersion}` };
  }, [connect, space]);

  const deploy = await stage("deploy", async () => {
    const r = await new DeploymentRepository(client, cfg.space).create({
      spaceName: cfg.space, ProjectName: cfg.project, ReleaseVersion: cfg.releaseVersion,
      EnvironmentNames: [cfg.environment], Variables: {},
    });
    const tasks = r?.DeploymentServerTasks ?? [];
    check(tasks.length >= 1 && tasks[0].ServerTaskId, `no ServerTaskId returned: ${JSON.stringify(r)}`);
    summary.deploymentId = tasks[0].DeploymentId;
    summary.serverTaskId = tasks[0].ServerTaskId;
    return { value: tasks, detail: tasks.map((t) => `${t.DeploymentId}/${t.ServerTaskId}`).join(", ") };
  }, [release]);

  const cancel = await stage("cancel", async () => {
    const id = deploy.value[0].ServerTaskId;
    const seen = [];
    const errorsBefore = httpErrors.length;
    const waiter = new ServerTaskWaiter(client, cfg.space, { maxRetries: 3, retryBackoffMs: 250 });
    let thrown;
    let done = [];
    try {
      // Tiny timeout + cancelOnTimeout: one poll, then POST /api/tasks/{id}/cancel, then it throws.
      done = await waiter.waitForServerTasksToComplete([id], 100, 10, (t) => {
        if (seen[seen.length - 1] !== t.State) seen.push(t.State);
      }, true);
    } catch (e) {
      thrown = e;
    }
    summary.observedStates = seen;
    if (!thrown) {
      throw new Error(`task ${id} completed (${done.map((t) => t.State).join(",")}) before it could be cancelled; ` +
        "the server must keep it Queued/Executing long enough");
    }
    check(/cancel/i.test(String(thrown.message)), `waiter threw an unexpected error: ${describeError(thrown)}`);
    const cancelErr = httpErrors.slice(errorsBefore).find((d) => /\/cancel$/.test(d.url));
    check(!cancelErr, `cancel request failed (the waiter only warns): ${cancelErr?.method} ${cancelErr?.url} -> ${cancelErr?.statusCode} ${oneLine(cancelErr?.errorMessage)}`);
    return { value: id, detail: `waiter cancelled ${id} after states ${seen.join(">")}: ${oneLine(thrown.message)}` };
  }, [deploy]);

  await stage("cancel-final-state", async () => {
    const id = cancel.value;
    const repo = new SpaceServerTaskRepository(client, cfg.space);
    const seen = [];
    const deadline = Date.now() + Math.min(cfg.waitTimeoutMs, 60_000);
    let task;
    for (;;) {
      [task] = await repo.getByIds([id]);
      check(task?.Id === id, `task list does not contain ${id}`);
      check(KNOWN_STATES.has(task.State), `unknown State "${task.State}"`);
      if (seen[seen.length - 1] !== task.State) seen.push(task.State);
      check(task.IsCompleted === COMPLETED_STATES.has(task.State), `State=${task.State} but IsCompleted=${task.IsCompleted}`);
      if (task.IsCompleted || Date.now() > deadline) break;
      await sleep(250);
    }
    summary.taskState = task.State;
    summary.cancelStates = seen;
    check(task.State === "Canceled", `final State=${task.State} (seen ${seen.join(">")}), expected Canceled`);
    check(task.FinishedSuccessfully === false, `Canceled task has FinishedSuccessfully=${task.FinishedSuccessfully}`);
    const byId = await repo.getById(id);
    check(byId.State === "Canceled", `getById State=${byId.State}`);
    return `${id} ${seen.join(">")}`;
  }, [cancel]);
}

// ---------------------------------------------------------------- push flow

/** The status of the last package upload the client made (from its response/error hooks). */
function lastUploadStatus(sinceResponses, sinceErrors) {
  const isUpload = (d) => /\/packages\/raw(\?|$)/.test(String(d.url));
  const seen = [
    ...httpResponses.slice(sinceResponses).filter(isUpload),
    ...httpErrors.slice(sinceErrors).filter(isUpload),
  ];
  check(seen.length === 1, `expected exactly one upload request, saw ${seen.length}`);
  return seen[0].statusCode;
}

/**
 * Packs a zip with ZipPackageBuilder and pushes it with PackageRepository.push in the three
 * overwrite modes (what push-package-action does), recording each upload's status:
 * FailIfExists 201, IgnoreIfExists 200, FailIfExists again 409 (the push throws), then
 * OverwriteExisting 201. Then lists it and pushes build information for it.
 */
async function pushFlow(client, connect, space) {
  const pack = await stage("pack", async () => {
    const base = fs.mkdtempSync(path.join(os.tmpdir(), "ferry-ts-push-"));
    const content = path.join(base, "content");
    fs.mkdirSync(path.join(content, "bin"), { recursive: true });
    fs.writeFileSync(path.join(content, "hello.txt"), "hello from the ts client\n");
    fs.writeFileSync(path.join(content, "bin", "run.sh"), "#!/bin/sh\necho hi\n");
    const out = path.join(base, "out");
    fs.mkdirSync(out);
    const quiet = { debug() {}, info() {}, warn() {}, error() {} };
    const cwd = process.cwd();
    let name;
    try {
      name = await new ZipPackageBuilder().pack({
        packageId: cfg.packageId, version: cfg.packageVersion, basePath: content,
        inputFilePatterns: ["**/*"], outputFolder: out, logger: quiet,
      });
    } finally {
      process.chdir(cwd); // the builder changes directory while it zips
    }
    const file = path.join(out, name);
    check(fs.existsSync(file), `ZipPackageBuilder did not write ${file}`);
    summary.packageFile = name;
    return { value: file, detail: `${name} ${fs.statSync(file).size} bytes` };
  }, [connect]);

  const repo = new PackageRepository(client, cfg.space);
  summary.pushStatuses = [];
  const steps = [
    ["FailIfExists", 201, false],
    ["IgnoreIfExists", 200, false],
    ["FailIfExists", 409, true],
    ["OverwriteExisting", 201, false],
  ];
  for (const [mode, expected, throws] of steps) {
    await stage(`push-${mode}-${expected}`, async () => {
      const r = httpResponses.length;
      const e = httpErrors.length;
      let thrown;
      try {
        await repo.push([pack.value], OverwriteMode[mode]);
      } catch (err) {
        thrown = err;
      }
      const status = lastUploadStatus(r, e);
      summary.pushStatuses.push(status);
      check(status === expected, `${mode}: status ${status}, expected ${expected}`);
      if (throws) {
        check(thrown, `${mode} on an existing package did not throw`);
        check(/already exists/.test(String(thrown.message)), `the error does not say the package exists: ${describeError(thrown)}`);
      } else {
        check(!thrown, `${mode} threw: ${describeError(thrown)}`);
      }
      return `${mode} -> ${status}${thrown ? ` (threw: ${oneLine(thrown.message, 120)})` : ""}`;
    }, [pack, space]);
  }

  await stage("package-list", async () => {
    const list = await repo.list({ filter: cfg.packageId, skip: 0, take: 30 });
    check(Array.isArray(list?.Items), "package list returned no Items array");
    const hit = list.Items.find((p) => p.PackageId === cfg.packageId && p.Version === cfg.packageVersion);
    check(hit, `package ${cfg.packageId} ${cfg.packageVersion} not listed (got ${list.Items.map((p) => `${p.PackageId} ${p.Version}`).join(", ") || "none"})`);
    check(hit.FeedId === "feeds-builtin", `FeedId ${hit.FeedId}`);
    check(/^[0-9a-f]{40}$/.test(hit.Hash), `Hash ${hit.Hash} is not a SHA-1`);
    check(hit.ReleaseNotes === null, `ReleaseNotes ${JSON.stringify(hit.ReleaseNotes)} is not null`);
    summary.packageId = hit.Id;
    return `${hit.Id} ${hit.PackageSizeBytes} bytes Hash=${hit.Hash}`;
  }, [pack, space]);

  await stage("build-information", async () => {
    const r = httpResponses.length;
    await new BuildInformationRepository(client, cfg.space).push({
      spaceName: cfg.space,
      BuildEnvironment: "GitHub Actions", BuildNumber: "42", BuildUrl: "https://github.com/o/r/actions/runs/1",
      Branch: "main", VcsType: "Git", VcsRoot: "https://github.com/o/r", VcsCommitNumber: "abc123",
      Commits: [{ Id: "abc123", Comment: "Add the thing" }],
      Packages: [{ Id: cfg.packageId, Version: cfg.packageVersion }],
    }, OverwriteMode.OverwriteExisting);
    const seen = httpResponses.slice(r).filter((d) => /\/build-information/.test(String(d.url)));
    check(seen.length === 1 && seen[0].statusCode === 201, `build information push answered ${seen.map((d) => d.statusCode).join(",")}`);
    return "OverwriteExisting -> 201";
  }, [pack, space]);
}

// ---------------------------------------------------------------- tenanted flow

/**
 * create-release-action in a non-default channel, then deploy-release-tenanted-action: deploy to
 * tenants by name and tag, join the answer the way the action does (deployments by id ->
 * TenantId/TaskId, tenants by id -> Name), and wait for every task.
 */
async function tenantedFlow(client, connect, space) {
  const project = await stageProject(client, space);
  const releases = new ReleaseRepository(client, cfg.space);
  const release = await stage("release-create-channel", async () => {
    check(cfg.channel, "FERRY_CHANNEL is not set");
    const r = await releases.create({
      spaceName: cfg.space, ProjectName: cfg.project, ChannelName: cfg.channel,
      ReleaseVersion: cfg.releaseVersion, IgnoreChannelRules: false, CustomFields: {},
    });
    check(r?.ReleaseId, `response has no ReleaseId: ${JSON.stringify(r)}`);
    const got = await releases.get(r.ReleaseId);
    summary.releaseId = r.ReleaseId;
    summary.channelId = got.ChannelId;
    return { value: r, detail: `${r.ReleaseId} ${r.ReleaseVersion} ChannelId=${got.ChannelId}` };
  }, [connect, space]);

  const deployments = new DeploymentRepository(client, cfg.space);
  const deploy = await stage("deploy-tenanted", async () => {
    const r = await deployments.createTenanted({
      spaceName: cfg.space,
      ProjectName: cfg.project,
      ReleaseVersion: cfg.releaseVersion,
      EnvironmentName: cfg.environment,
      Tenants: cfg.tenants,
      TenantTags: cfg.tenantTags,
      UseGuidedFailure: false,
      Variables: {},
    });
    const tasks = r?.DeploymentServerTasks ?? [];
    check(tasks.length > 0, "no DeploymentServerTasks");
    return { value: tasks, detail: tasks.map((t) => `${t.DeploymentId}/${t.ServerTaskId}`).join(", ") };
  }, [release]);

  await stage("deploy-tenanted-join", async () => {
    const tasks = deploy.value;
    const ids = tasks.map((t) => t.DeploymentId);
    const deps = await deployments.list({ ids, take: ids.length });
    check(Array.isArray(deps?.Items) && deps.Items.length === ids.length, `deployments list returned ${deps?.Items?.length} of ${ids.length}`);
    const tenantIds = [...new Set(deps.Items.map((d) => d.TenantId))];
    check(tenantIds.every(Boolean), "a listed deployment has no TenantId");
    const tenants = await new TenantRepository(client, cfg.space).list({ ids: tenantIds, take: tenantIds.length });
    check(Array.isArray(tenants?.Items), "tenants list returned no Items array");
    // The action's join: ServerTaskId -> Deployment.TaskId -> Tenant.Id, dereferencing [0].
    const names = tasks.map((t) => {
      const dep = deps.Items.filter((d) => d.TaskId === t.ServerTaskId)[0];
      check(dep, `no deployment has TaskId ${t.ServerTaskId}`);
      const tenant = tenants.Items.filter((x) => x.Id === dep.TenantId)[0];
      check(tenant, `tenant ${dep.TenantId} not in the tenants list`);
      check(dep.ChannelId === summary.channelId, `deployment ChannelId ${dep.ChannelId} != release's ${summary.channelId}`);
      return tenant.Name;
    }).sort();
    summary.tenants = names;
    if (cfg.expectTenants.length) {
      const want = [...cfg.expectTenants].sort();
      check(JSON.stringify(names) === JSON.stringify(want), `deployed to ${names.join(", ")}, expected ${want.join(", ")}`);
    }
    return names.join(", ");
  }, [deploy]);

  await stage("wait-tenanted", async () => {
    const ids = deploy.value.map((t) => t.ServerTaskId);
    const waiter = new ServerTaskWaiter(client, cfg.space, { maxRetries: 3, retryBackoffMs: 250 });
    const done = await waiter.waitForServerTasksToComplete(ids, cfg.pollMs, cfg.waitTimeoutMs, () => {});
    check(done.length === ids.length, `timed out after ${cfg.waitTimeoutMs} ms`);
    for (const t of done) check(t.State === "Success", `task ${t.Id} State=${t.State} ${oneLine(t.ErrorMessage)}`);
    summary.taskState = "Success";
    return done.map((t) => `${t.Id}=${t.State}`).join(", ");
  }, [deploy]);
}

// ---------------------------------------------------------------- main

async function main() {
  const config = await stageConfig();
  const connect = await stageConnect(config);
  const client = connect.value;
  const space = await stageSpace(client, connect);
  if (cfg.flow === "cancel") {
    await cancelFlow(client, connect, space);
  } else if (cfg.flow === "tenanted") {
    await tenantedFlow(client, connect, space);
  } else if (cfg.flow === "push") {
    await pushFlow(client, connect, space);
  } else {
    await deployFlow(client, connect, space);
  }
  await stageErrorContract(client, space);
  finish();
}

main().catch((e) => {
  recordStage("unexpected", false, describeError(e));
  finish();
});
