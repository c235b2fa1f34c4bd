"""The unsaved-change warning: the browser knows whether the form holds edits not yet saved.

The state lives in the page (``window.animaEditor``) because the one moment it matters most,
closing or reloading the tab, gives no chance to ask the server. Typing in the form, a
greeting added, moved or removed, or a new avatar marks the form dirty; a load, New, or a save
that succeeded marks it clean (a refused save keeps it dirty: the typed values are still the
only copy). Leaving the page while dirty makes the browser ask; picking another agent or
pressing New asks first too, and answering "Cancel" keeps the form as typed.
"""

from __future__ import annotations

from ui.agents.handlers import STAY

# Installed once per page (the studio's ``head``). Inputs inside an element with the class
# ``anima-track`` count as edits; Gradio's own ``.input`` events cover the controls whose
# changes are no DOM input (dropdown picks, sliders), see ``MARK_DIRTY``.
PAGE_SCRIPT = """
<script>
(() => {
  if (window.animaEditor) return;
  const editor = {
    dirty: false,
    markDirty() { editor.dirty = true; document.body.classList.add('anima-dirty'); },
    markClean() { editor.dirty = false; document.body.classList.remove('anima-dirty'); },
    kept: 0,  // switches the user cancelled whose clean-up (MARK_CLEAN) has not run yet
    asked: null,
    keepEdits(what) {
      // One pick can fire the picker's input event twice: ask once, answer both.
      const now = Date.now();
      const recent = editor.asked && editor.asked.what === what && now - editor.asked.at < 5000;
      const keep = recent ? editor.asked.keep : editor.dirty && !window.confirm(
        'This agent has unsaved changes. Discard them? (Cancel keeps editing.)');
      editor.asked = {what, keep, at: now};
      if (keep) editor.kept += 1;
      return keep;
    },
  };
  window.animaEditor = editor;
  document.addEventListener('input', (event) => {
    const target = event.target;
    if (target && target.closest && target.closest('.anima-track')) editor.markDirty();
  }, true);
  window.addEventListener('beforeunload', (event) => {
    if (!editor.dirty) return;
    event.preventDefault();
    event.returnValue = '';
  });
})();
</script>
"""

MARK_DIRTY = "() => { window.animaEditor && window.animaEditor.markDirty(); }"


def confirm_switch(inputs: int) -> str:
    """The ``js`` of a load (picker) or New: asks when dirty, before the handler runs.

    The event's last input is a hidden textbox (``intent``) that carries STAY when the user
    chose to keep editing; the other inputs pass through unchanged. (Gradio hands a ``js``
    function the event's inputs and then its outputs, and wants one value back per input; a
    dropdown refuses values not among its choices, so the pick itself cannot carry the
    answer.)
    """
    return f"""
(...values) => {{
  const inputs = values.slice(0, {inputs});
  const keep = window.animaEditor && window.animaEditor.keepEdits(String(values[0]));
  inputs[{inputs - 1}] = keep ? "{STAY}" : "";
  return inputs;
}}
"""


# After a load, New or save: clean unless the status line reports a refusal (``show_error``
# starts it with a warning sign) or the switch was cancelled (the picker was put back).
MARK_CLEAN = """
(status) => {
  const editor = window.animaEditor;
  if (!editor) return;
  if (editor.kept > 0) { editor.kept -= 1; return; }
  if (!String(status || '').startsWith('⚠️')) editor.markClean();
}
"""
