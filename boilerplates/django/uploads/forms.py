from django import forms
from django.conf import settings
from django.template.defaultfilters import filesizeformat


class UploadForm(forms.Form):
    file = forms.FileField()

    def clean_file(self):
        f = self.cleaned_data["file"]
        if f.size > settings.MAX_UPLOAD_SIZE:
            raise forms.ValidationError(
                "The file is %s; the limit is %s."
                % (filesizeformat(f.size), filesizeformat(settings.MAX_UPLOAD_SIZE))
            )
        return f
