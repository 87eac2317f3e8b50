-- Argo CD health check for serving.conch.dev/ModelVersion (docs/observability.md).
-- A ModelVersion is an immutable record: Healthy once the operator has seen it, Degraded
-- when a condition it reports is False (e.g. InvalidSpec), Progressing before that.
local hs = {}
local status = obj.status
if status == nil or status.observedGeneration == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the Conch operator"
  return hs
end
if status.conditions ~= nil then
  for _, c in ipairs(status.conditions) do
    if c.status == "False" then
      hs.status = "Degraded"
      hs.message = (c.reason or c.type) .. ": " .. (c.message or "")
      return hs
    end
  end
end
hs.status = "Healthy"
if status.usedBy ~= nil and #status.usedBy > 0 then
  hs.message = "Used by " .. table.concat(status.usedBy, ", ")
else
  hs.message = "Not served by any ModelService"
end
return hs
