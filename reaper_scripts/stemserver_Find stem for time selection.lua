-- @description stemserver: find a stem that fits the time selection
-- @author stemserver
-- @version 0.2.0
-- @changelog
--   Tempo and key: the query carries the project's tempo (and the mix's key, if set in Settings);
--   the stem is inserted stretched to the project's tempo (take playrate, pitch preserved) and
--   transposed into the mix's key (Settings can turn that off); the menu and the take's name show
--   each stem's tempo, stretch, key and transposition. Needs a stemserver that knows `--tempo`.
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
--   up with the mix, stretched to the project's tempo and transposed into the mix's key. "Next
--   result" and "Previous result" swap it for the other proposals.
--
--   Needs the stemserver server running on this machine (or on one it can reach) and the
--   `stemserver` command installed; see reaper_scripts/README.md in the stemserver repository.

-- Renders the last 8 s of the time selection (the master mix), asks the server through the
-- `stemserver query` client, shows the ranked stems in a menu, and inserts the chosen one.
local here = ({ reaper.get_action_context() })[2]:match("^(.*[/\\])") or ""
local stemserver = dofile(here .. "stemserver_lib.lua")
stemserver.main(stemserver.find_stem)
