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
    kept: false,
    keepEdits() {
      editor.kept = editor.dirty && !window.confirm(
        'This agent has unsaved changes. Discard them? (Cancel keeps editing.)');
      return editor.kept;
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

# Before a load (picker) or New: asks when dirty; "Cancel" sends STAY instead of the pick.
# The event's other inputs pass through unchanged (Gradio wants one value per input).
CONFIRM_SWITCH = f"""
(picked, ...rest) => [
  (window.animaEditor && window.animaEditor.keepEdits()) ? "{STAY}" : picked, ...rest]
"""

# After a load, New or save: clean unless the status line reports a refusal (``show_error``
# starts it with a warning sign) or the switch was cancelled (the picker was put back).
MARK_CLEAN = """
(status) => {
  const editor = window.animaEditor;
  if (!editor) return;
  if (editor.kept) { editor.kept = false; return; }
  if (!String(status || '').startsWith('⚠️')) editor.markClean();
}
"""
