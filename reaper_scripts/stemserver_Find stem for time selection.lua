-- @description stemserver: find a stem that fits the time selection
-- @author stemserver
-- @version 0.1.0
-- @changelog
--   First release: find a stem for the time selection, step through the results, settings.
-- @provides
--   [main] stemserver_Next result.lua
--   [main] stemserver_Previous result.lua
--   [main] stemserver_Settings.lua
--   stemserver_lib.lua
-- @about
--   # stemserver for REAPER
--
--   Select a few seconds of your mix with the time selection, name an instrument ("bass",
--   "nylon guitar"), and pick one of the stems of your own sample library that a running
--   `stemserver serve` proposes. The stem lands on a new track named after the instrument, lined
--   up with the mix. "Next result" and "Previous result" swap it for the other proposals.
--
--   Needs the stemserver server running on this machine (or on one it can reach) and the
--   `stemserver` command installed; see reaper_scripts/README.md in the stemserver repository.

-- Renders the last 8 s of the time selection (the master mix), asks the server through the
-- `stemserver query` client, shows the ranked stems in a menu, and inserts the chosen one.
local here = ({ reaper.get_action_context() })[2]:match("^(.*[/\\])") or ""
local stemserver = dofile(here .. "stemserver_lib.lua")
stemserver.main(stemserver.find_stem)
