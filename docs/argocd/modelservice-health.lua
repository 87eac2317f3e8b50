-- Argo CD health check for serving.conch.dev/ModelService (docs/observability.md).
-- Degraded: the Degraded condition is True (rolled back, a stalled rollout, the accuracy
--   gate, no metrics source), or Ready=False for a reason no waiting can fix.
-- Suspended: the rollout is paused by hand (spec.rollout.paused).
-- Progressing: the operator has not seen this generation yet, a rollout is under way, or
--   replicas are still coming up.
-- Healthy: Ready=True and no rollout in progress.
local hs = {}
local permanent = {
  InvalidSpec = true, PolicyViolation = true, NameConflict = true,
  ModelVersionNotFound = true, CredentialsNotAllowed = true, SourceNotAllowed = true,
}
local function condition(status, kind)
  if status.conditions == nil then return nil end
  for _, c in ipairs(status.conditions) do
    if c.type == kind then return c end
  end
  return nil
end
local status = obj.status
if status == nil or status.observedGeneration == nil
    or (obj.metadata.generation ~= nil and status.observedGeneration < obj.metadata.generation) then
  hs.status = "Progressing"
  hs.message = "Waiting for the Conch operator to reconcile this generation"
  return hs
end
local ready = condition(status, "Ready")
local degraded = condition(status, "Degraded")
local progressing = condition(status, "Progressing")
if degraded ~= nil and degraded.status == "True" then
  hs.status = "Degraded"
  hs.message = (degraded.reason or "") .. ": " .. (degraded.message or "")
  return hs
end
if ready ~= nil and ready.status == "False" and permanent[ready.reason] then
  hs.status = "Degraded"
  hs.message = ready.reason .. ": " .. (ready.message or "")
  return hs
end
if status.phase == "Paused" then
  hs.status = "Suspended"
  hs.message = progressing ~= nil and progressing.message or "Rollout paused"
  return hs
end
if status.phase == "Progressing" or status.phase == "Promoting" or status.phase == "RollingBack" then
  hs.status = "Progressing"
  hs.message = progressing ~= nil and progressing.message or ("Rollout " .. status.phase)
  return hs
end
if ready ~= nil and ready.status == "True" then
  hs.status = "Healthy"
  hs.message = ready.message or "Ready"
  return hs
end
hs.status = "Progressing"
hs.message = ready ~= nil and ((ready.reason or "") .. ": " .. (ready.message or "")) or "Waiting for Ready"
return hs
