-- @noindex
-- @description stemserver: previous result (replace the inserted stem with the previous one)
-- @author stemserver
-- @version 0.2.0
-- @about
--   Part of the "stemserver: find a stem that fits the time selection" package, which installs it.

-- Steps back through the results of the last "Find stem for time selection" of this project.
local here = ({ reaper.get_action_context() })[2]:match("^(.*[/\\])") or ""
local stemserver = dofile(here .. "stemserver_lib.lua")
stemserver.main(stemserver.step_result, -1)
